"""branchflow's engine: the case of a Party branch, its machine, storage, audit log and use cases."""
