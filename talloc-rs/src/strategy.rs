//! Proptest strategies for users' own property tests (feature `proptest`).
