//! seccs key service: KEK/DEK facility, HTTPS server, caching local facility.
