//! fpsyncd, the supervisor, and the fpsync CLI (to come: see the supervisor issue).
