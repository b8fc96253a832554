/* ruvllm.h: what the library's source files share. */
#ifndef RUVLLM_H
#define RUVLLM_H

/* Settings defined in ruvllm.c and read by the witness queue. */
extern bool ruvllm_witness_async;
extern int	ruvllm_witness_writer_idle;

/* Starts writers for witness rows kept in the queue across a restart (witness_queue.c). */
extern void ruvllm_witness_recover(void);

/* The learning loops' worker. */
extern char *ruvllm_databases;
extern int	ruvllm_instant_interval;
extern int	ruvllm_background_interval;
extern int	ruvllm_deep_interval;

/* Cypher writes refused for roles other than superusers and ruvllm_admin (graph_guard.c). */
extern bool ruvllm_guard_cypher_writes;
extern void ruvllm_graph_guard_init(void);

/* Registers the launcher of the loop workers (worker.c); only from shared_preload_libraries. */
extern void ruvllm_register_launcher(void);

/* The shared inference servers (inference_server.c); settings defined in ruvllm.c. */
#define RUVLLM_INFERENCE_SERVER 0
#define RUVLLM_INFERENCE_IN_PROCESS 1
#define RUVLLM_INFERENCE_REMOTE 2
extern int	ruvllm_inference_mode;
extern char *ruvllm_inference_models;
extern char *ruvllm_inference_server_path;
extern int	ruvllm_inference_slots;
extern int	ruvllm_inference_threads;
extern int	ruvllm_inference_ctx_per_slot;
extern void ruvllm_register_inference_supervisor(void);

#endif
