-- Bad input fails with a SQLSTATE and writes nothing. VERBOSITY sqlstate prints the code only,
-- which a release keeps even when it rewords a message.
SELECT count(*) AS nodes_before FROM ruvllm.nodes \gset
\set VERBOSITY sqlstate
SELECT ruvllm_ingest(NULL::text);                       -- 22004 null value not allowed
SELECT ruvllm_ingest('   ');                            -- 22023 invalid parameter value
SELECT ruvllm_ingest('ok', 'Blog');                     -- 22023 (unknown node type)
SELECT ruvllm_ingest('ok', 'Fact', NULL, '[1,2]');      -- 22023 (metadata not an object)
SELECT ruvllm_ingest(repeat('x', 1000001));             -- 22001 string data right truncation
SELECT ruvllm_embed(NULL::text);                        -- 22023 (nothing to embed)
SELECT * FROM ruvllm_search('q', 0);                    -- 22003 numeric value out of range
SELECT * FROM ruvllm_search('q', 5, 4);                 -- 22003
SELECT ruvllm_link(gen_random_uuid(), gen_random_uuid(), 'Cites');  -- P0002 no data found
SELECT ruvllm_query(NULL);                              -- 22004
SELECT ruvllm_query('hi', NULL, '{"colour": "blue"}');  -- 22023 (unknown constraint)
SELECT ruvllm_query('hi', NULL, '{"max_tokens": 0}');   -- 22003
SELECT ruvllm_query('hi', NULL, '{"model": "nope"}');   -- 42704 undefined object
SELECT ruvllm_feedback(gen_random_uuid(), 3);           -- P0002
SELECT ruvllm_feedback(gen_random_uuid(), 6);           -- 22003
SELECT ruvllm_set_retention('memory', '1 day');         -- 22023
SET ruvllm.tenant = 'a b';                              -- 22023, checked when set
SET ruvllm.no_such_setting = 1;                         -- 42602 invalid name: the prefix is reserved
\set VERBOSITY default
SELECT (SELECT count(*) FROM ruvllm.nodes) = :nodes_before AS no_nodes_written,
       (SELECT count(*) FROM ruvllm.retention) AS retention,
       current_setting('ruvllm.tenant') = '' AS tenant_unchanged;
-- Each failed ruvllm_query is witnessed, with its SQLSTATE.
SELECT ruvllm_witness_flush(10000);
SELECT error_sqlstate, response IS NULL AS no_answer FROM ruvllm.witness WHERE query = 'hi' ORDER BY 1;
