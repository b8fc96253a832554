-- The three roles, each refusing what is outside it (42501) and changing nothing.
-- Role names start with regress_, as PostgreSQL's own tests' do; they are dropped at the end.
CREATE ROLE regress_ruvllm_nobody;
CREATE ROLE regress_ruvllm_user IN ROLE ruvllm_user;
CREATE ROLE regress_ruvllm_analyst IN ROLE ruvllm_analyst;
\set VERBOSITY sqlstate

-- A role without a ruvllm role can do nothing.
SET ROLE regress_ruvllm_nobody;
SELECT ruvllm_info();
SELECT ruvllm_search('witness log');
SELECT count(*) FROM ruvllm.nodes;
RESET ROLE;

-- A user adds to and searches its memory, but runs no loops, sets no retention, reads no BI view
-- and no other tenant's rows.
SET ROLE regress_ruvllm_user;
SELECT ruvllm_ingest('Role tests write this note.') IS NOT NULL AS ingested;
SELECT content FROM ruvllm_search('role tests note', 1, 0);
SELECT ruvllm_run_loop('deep');
SELECT ruvllm_set_retention('witness', '7 days');
SELECT ruvllm_create_tenant('regress_tenant');
SELECT count(*) FROM ruvllm.requests;
SET ruvllm.pii_mask = '';
-- Nor writes the witness log: ruvllm writes the rows of its calls.
SELECT ruvllm._witness_enqueue('{"query": "planted"}');
INSERT INTO ruvllm.witness (request_id, query) VALUES (gen_random_uuid(), 'planted');
UPDATE ruvllm.witness SET quality = 1.0;
RESET ROLE;

-- An analyst reads the BI views, nothing else.
SET ROLE regress_ruvllm_analyst;
SELECT count(*) >= 0 AS reads_requests FROM ruvllm.requests;
SELECT count(*) FROM ruvllm.witness;
SELECT ruvllm_search('witness log');
SELECT ruvllm_ingest('an analyst may not write');
RESET ROLE;

\set VERBOSITY default
SELECT count(*) AS analyst_notes FROM ruvllm.nodes WHERE content LIKE 'an analyst%';
SELECT count(*) AS retention FROM ruvllm.retention;
SELECT count(*) AS tenants FROM ruvllm.tenants WHERE tenant = 'regress_tenant';
DROP ROLE regress_ruvllm_nobody, regress_ruvllm_user, regress_ruvllm_analyst;
