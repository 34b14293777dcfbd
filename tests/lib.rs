//! Shared helpers for the cross-crate tests (the tests live in `tests/`).
//!
//! This library also runs the book's code: every chapter of `docs/src` is
//! included below as the documentation of an empty module, so rustdoc treats
//! each of its code blocks as a doctest, and `cargo test --workspace` compiles
//! and runs them. Doctests see this package's dependencies and
//! dev-dependencies (`talloc`, `tevent`, `tevent_thread`, `proptest`).
//!
//! As in any doctest, a fence with no language (```` ``` ````) counts as Rust:
//! mark other blocks `text`, `sh`, `console`, `dot`, …, and mark Rust that
//! must not run `ignore` or `no_run`. Lines starting with `# ` are hidden in
//! the book but still compiled.
//!
//! A new chapter needs a module here; the test `every_chapter_is_doctested`
//! fails until it has one.

/// The book's chapters, one module each; only compiled for rustdoc's doctests.
#[cfg(doctest)]
pub mod book {
    #[doc = include_str!("../docs/src/introduction.md")]
    pub mod introduction {}

    /// The talloc guide.
    pub mod talloc {
        #[doc = include_str!("../docs/src/talloc/contexts.md")]
        pub mod contexts {}
        #[doc = include_str!("../docs/src/talloc/free.md")]
        pub mod free {}
        #[doc = include_str!("../docs/src/talloc/steal.md")]
        pub mod steal {}
        #[doc = include_str!("../docs/src/talloc/references.md")]
        pub mod references {}
        #[doc = include_str!("../docs/src/talloc/names.md")]
        pub mod names {}
        #[doc = include_str!("../docs/src/talloc/pools.md")]
        pub mod pools {}
        #[doc = include_str!("../docs/src/talloc/reports.md")]
        pub mod reports {}
        #[doc = include_str!("../docs/src/talloc/limits.md")]
        pub mod limits {}
        #[doc = include_str!("../docs/src/talloc/threads.md")]
        pub mod threads {}
    }

    /// The tevent tutorial.
    pub mod tevent {
        #[doc = include_str!("../docs/src/tevent/context.md")]
        pub mod context {}
        #[doc = include_str!("../docs/src/tevent/requests.md")]
        pub mod requests {}
        #[doc = include_str!("../docs/src/tevent/events.md")]
        pub mod events {}
        #[doc = include_str!("../docs/src/tevent/data.md")]
        pub mod data {}
        #[doc = include_str!("../docs/src/tevent/threads.md")]
        pub mod threads {}
        #[doc = include_str!("../docs/src/tevent/async.md")]
        pub mod async_await {}
    }

    #[doc = include_str!("../docs/src/recipes.md")]
    pub mod recipes {
        // The recipes' programs are examples of their crates, run by
        // `cargo test` there; these modules test the chapters' other
        // blocks.
        #[doc = include_str!("../docs/src/recipes/unix_server.md")]
        pub mod unix_server {}
        #[doc = include_str!("../docs/src/recipes/read_to_eof.md")]
        pub mod read_to_eof {}
        #[doc = include_str!("../docs/src/recipes/graceful_shutdown.md")]
        pub mod graceful_shutdown {}
        #[doc = include_str!("../docs/src/recipes/callback_errors.md")]
        pub mod callback_errors {}
        #[doc = include_str!("../docs/src/recipes/worker_pool.md")]
        pub mod worker_pool {}
    }

    #[doc = include_str!("../docs/src/property-testing.md")]
    pub mod property_testing {}
    #[doc = include_str!("../docs/src/porting.md")]
    pub mod porting {}
    #[doc = include_str!("../docs/src/rules.md")]
    pub mod rules {}
    #[doc = include_str!("../docs/src/design.md")]
    pub mod design {}
    #[doc = include_str!("../docs/src/performance.md")]
    pub mod performance {}
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.md` file of the book except SUMMARY.md, relative to `docs/src`.
    fn chapters(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read docs/src") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                chapters(&path, &format!("{prefix}{name}/"), out);
            } else if name.ends_with(".md") && name != "SUMMARY.md" {
                out.push(format!("{prefix}{name}"));
            }
        }
    }

    #[test]
    fn every_chapter_is_doctested() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let this_file = std::fs::read_to_string(root.join("lib.rs")).expect("read lib.rs");
        let mut found = Vec::new();
        chapters(&root.join("../docs/src"), "", &mut found);
        assert!(!found.is_empty(), "no chapters found in docs/src");
        let missing: Vec<_> = found
            .iter()
            .filter(|ch| !this_file.contains(&format!("include_str!(\"../docs/src/{ch}\")")))
            .collect();
        assert!(
            missing.is_empty(),
            "chapters without a doctest module in tests/lib.rs: {missing:?}"
        );
    }
}
