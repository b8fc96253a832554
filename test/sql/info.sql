-- ruvllm_info(): its keys, and that extension, library and Python package are one version (the
-- version itself and the library versions vary, so they are not printed).
SELECT key, jsonb_typeof(value) AS type FROM jsonb_each(ruvllm_info()) ORDER BY key;
SELECT i->>'extension' = i->>'library' AND i->>'library' = i->>'python_package' AS one_version,
       i->>'extension' = (SELECT extversion FROM pg_extension WHERE extname = 'ruvllm') AS installed_version
  FROM ruvllm_info() i;
