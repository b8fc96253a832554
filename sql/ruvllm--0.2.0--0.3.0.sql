-- ruvllm 0.2.0 -> 0.3.0 upgrade script. Every statement here is also in sql/ruvllm.sql, where
-- the object is defined; tests/integration/test_upgrade.py checks that both give the same catalog.
\echo Use "ALTER EXTENSION ruvllm UPDATE TO '0.3.0'" to load this file. \quit
