//! Worker processes (`rpcnet-worker`) killed with SIGKILL or stopped with
//! SIGTERM under load.
