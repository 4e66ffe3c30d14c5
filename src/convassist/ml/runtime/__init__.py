"""One job runtime for generation and training jobs: in-process, or SAQ on Redis.

`records` holds the typed record every job has and the one staleness rule (`is_dead`);
`stores` keeps records (`LocalStore`: memory, optionally one file per job; `RedisStore`);
`runtime` runs a job (claim, heartbeat, final write, hook) and sweeps dead ones; `inprocess`
and `saq` are its two implementations.
"""
