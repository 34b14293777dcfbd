//! Thread proxies (work in progress).
