-- ruvllm_query end to end with a real model: the answer's shape (keys and types), not the
-- generated text, which the model may word differently on other hardware.
-- No exploration: the router's own choice, so the answer is cached.
SET ruvllm.explore_rate = 0;
SELECT ruvllm_ingest('The capital of France is Paris. Paris lies on the river Seine.', 'Fact') IS NOT NULL AS ingested;
CREATE TEMP TABLE answer AS
    SELECT ruvllm_query('What is the capital of France?', NULL, '{"max_tokens": 8}') AS r;
SELECT key, jsonb_typeof(value) AS type FROM answer, jsonb_each(r) ORDER BY key;
SELECT key FROM answer, jsonb_object_keys(r->'routing') key ORDER BY key;
SELECT key FROM answer, jsonb_object_keys(r->'latency_ms') key ORDER BY key;
SELECT key FROM answer, jsonb_object_keys(r->'sources'->0) key ORDER BY key;
SELECT length(r->>'text') > 0 AS answered,
       r->'routing'->>'model' IN (SELECT name FROM ruvllm.models) AS known_model,
       r->'sources'->0->>'excerpt' LIKE '%Paris%' AS best_source,
       (r->>'cache_hit')::boolean AS cache_hit
  FROM answer;
-- The same question again is served from the response cache.
SELECT (ruvllm_query('What is the capital of France?', NULL, '{"max_tokens": 8}')->>'cache_hit')::boolean AS cache_hit;
-- One witness row per call, both with the request's model and no error.
SELECT ruvllm_witness_flush(10000);
SELECT count(*) AS rows, count(*) FILTER (WHERE error IS NULL AND model IS NOT NULL) AS answered
  FROM ruvllm.witness WHERE query = 'What is the capital of France?';
SELECT count(*) AS witnessed FROM ruvllm.witness w, answer WHERE w.request_id = (r->>'request_id')::uuid;
-- The row form: plain columns.
SELECT pg_get_function_result('ruvllm_query_row'::regproc);
