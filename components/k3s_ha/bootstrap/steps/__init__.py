"""The bootstrap's remote steps, one module per step, in run order: upgrade_guard -> install
(every node, parallel) -> servers (first server, then joins one at a time) -> agents
(parallel) -> membership and kubeconfig."""
