//! seccs network backends for the seccs content store: Redis, PostgreSQL, S3.
