//! C ABI over the blocking facade of betterpg-core (see issue: C ABI).
