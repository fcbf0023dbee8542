//! Python bindings over the blocking facade of betterpg-core (see issue: Python).
