"""Several signer hosts, one double-sign watermark per chain, in etcd (docs HA.md).

etcd: the minimal etcd v3 client. record: the watermark record stored there.
gate: the per-request compare-and-swap the guard calls before signing.
setup: building the client and the gates from `[shared_state]`.
Never touches the local state file (kms.state) or keys (kms.signer).
"""
