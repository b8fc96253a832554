-- Ingest a few short documents, then search them: nearest first, and the graph edge added by
-- ruvllm_link leads one hop further. Ids are random and distances depend on floating point, so
-- only content, order and hops are printed.
SELECT count(*) AS ingested FROM unnest(ruvllm_ingest_many(ARRAY[
    'To rotate the witness log, drop its oldest daily partition.',
    'VACUUM reclaims the space of dead tuples in PostgreSQL.',
    'The capital of France is Paris.'])) AS id;
SELECT content, node_type, hop FROM ruvllm_search('How do I rotate the witness log?', 1, 0);
SELECT count(*) AS found, (array_agg(content ORDER BY distance))[1] AS nearest
  FROM ruvllm_search('What does VACUUM do?', 3, 0);

SELECT ruvllm_link(
    (SELECT id FROM ruvllm.nodes WHERE content LIKE 'To rotate%'),
    (SELECT id FROM ruvllm.nodes WHERE content LIKE 'VACUUM%'), 'Cites', 0.8);
SELECT left(content, 30) AS content, hop, via_rel, round(edge_weight::numeric, 2) AS edge_weight
  FROM ruvllm_search('How do I rotate the witness log?', 1, 1) WHERE via_rel IS DISTINCT FROM 'SameTopic'
 ORDER BY hop, content;

-- One node and one graph vertex per document; metadata and source as given.
SELECT ruvllm_ingest('Replication slots keep WAL until standbys consume it.', 'Fact', 'docs/slots',
                     '{"tags": ["replication"]}') IS NOT NULL AS ingested;
SELECT node_type, source, metadata->'tags' AS tags FROM ruvllm.nodes WHERE source = 'docs/slots';
SELECT (SELECT count(*) FROM ruvllm.nodes) = (SELECT count(*) FROM ruvllm_graph."Node") AS a_vertex_per_node;

-- Lexical search finds the words of the question; a filter narrows every mode, graph neighbours
-- included.
SELECT left(content, 30) AS content, lexical_rank FROM ruvllm_search('dead tuples', 1, 0, 'lexical');
SELECT count(*) AS facts FROM ruvllm_search('replication', 10, 2, 'hybrid', '{"node_type": "Fact"}');

-- The embedding is 384 numbers of unit length.
SELECT vector_dims(v) AS dims, round(vector_norm(v)::numeric, 3) AS norm
  FROM ruvllm_embed('How do I back up PostgreSQL?') v;
