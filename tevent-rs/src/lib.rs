//! Event loop (work in progress).
