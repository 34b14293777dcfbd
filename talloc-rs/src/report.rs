//! Reports: C's `talloc_report*` text, a Graphviz picture, and the leak
//! report printed when a heap is dropped with objects still alive.

use std::fmt::Write as _;

use crate::storage::{flag, NIL};
use crate::{AnyPtr, Error, Talloc};

/// Which leak report a heap prints to stderr when it is dropped with objects
/// still alive (`talloc_enable_leak_report` / `_full`).
///
/// ```
/// use talloc::LeakReport;
/// # let mut heap = talloc::Talloc::new();
/// let conn = heap.new_context(None)?;
/// heap.alloc_str(conn, "inner")?;
/// // The summary lists top-level objects only; the full report their trees.
/// assert!(!heap.leak_report_text(LeakReport::Summary).contains("inner"));
/// assert!(heap.leak_report_text(LeakReport::Full).contains("inner"));
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakReport {
    /// One line per top-level object.
    Summary,
    /// The whole tree under every top-level object.
    Full,
}

/// One line of a report walk, as `talloc_report_depth_cb` hands it to its
/// callback.
///
/// ```
/// use talloc::ReportEntry;
/// # let mut heap = talloc::Talloc::new();
/// let root = heap.new_context(None)?;
/// let data = heap.alloc_str(None, "data")?;
/// heap.reference(root, data)?;
/// let mut seen = Vec::new();
/// heap.report_depth_cb(root, None, |_, e: ReportEntry| seen.push(e))?;
/// assert_eq!(seen.len(), 2);
/// assert_eq!((seen[0].ptr, seen[0].depth, seen[0].is_ref), (root.erase(), 0, false));
/// assert_eq!((seen[1].ptr, seen[1].depth, seen[1].is_ref), (data.erase(), 1, true));
/// # Ok::<(), talloc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportEntry {
    /// The object (for a reference, the referenced object).
    pub ptr: AnyPtr,
    /// Depth below the object the walk started at (which is depth 0).
    pub depth: usize,
    /// Whether this entry is a reference (then `ptr` is its target and the
    /// walk does not descend into it).
    pub is_ref: bool,
}

impl Talloc {
    /// Walks a subtree for a report (`talloc_report_depth_cb`): the object at
    /// depth 0, then its children (newest first) down to `max_depth` levels
    /// (`None`: no limit). A reference handle is reported as its target with
    /// `is_ref` set and is not descended into.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let root = heap.new_context(None)?;
    /// let a = heap.alloc_str(root, "a")?;
    /// heap.alloc_str(a, "deep")?;
    /// let mut depths = Vec::new();
    /// heap.report_depth_cb(root, Some(1), |_, e| depths.push(e.depth))?;
    /// assert_eq!(depths, [0, 1]);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn report_depth_cb(
        &self,
        p: impl Into<AnyPtr>,
        max_depth: Option<usize>,
        mut f: impl FnMut(&Talloc, ReportEntry),
    ) -> Result<(), Error> {
        let root = self.slot(p.into().key)?;
        self.walk(root, |slot, depth| {
            let n = self.slots.node(slot);
            if n.has(flag::REF_HANDLE) && depth > 0 {
                if let Some(t) = self.handle_target(slot) {
                    f(
                        self,
                        ReportEntry {
                            ptr: self.any(t),
                            depth,
                            is_ref: true,
                        },
                    );
                }
                return false;
            }
            f(
                self,
                ReportEntry {
                    ptr: self.any(slot),
                    depth,
                    is_ref: false,
                },
            );
            max_depth.is_none_or(|m| depth < m)
        });
        Ok(())
    }

    /// A report down to `max_depth` levels (`talloc_report_depth_file`), in
    /// C's format: a header line with the totals, then one line per object
    /// with its name, total bytes, total blocks and reference count.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let root = heap.new_context(None)?;
    /// heap.set_name_const(root, "root")?;
    /// heap.alloc_zeroed(root, 100)?;
    /// let text = heap.report_depth(root, None)?;
    /// assert!(text.starts_with("full talloc report on 'root' (total    100 bytes in   2 blocks)"));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn report_depth(
        &self,
        p: impl Into<AnyPtr>,
        max_depth: Option<usize>,
    ) -> Result<String, Error> {
        let mut out = String::new();
        self.report_depth_cb(p, max_depth, |heap, e| {
            heap.report_line(&mut out, e, max_depth)
        })?;
        Ok(out)
    }

    /// One line per direct child (`talloc_report`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let root = heap.new_context(None)?;
    /// let kid = heap.alloc_str(root, "kid")?;
    /// heap.alloc_str(kid, "grandkid")?;
    /// assert_eq!(heap.report(root)?.lines().count(), 2);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn report(&self, p: impl Into<AnyPtr>) -> Result<String, Error> {
        self.report_depth(p, Some(1))
    }

    /// The whole subtree (`talloc_report_full`).
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let root = heap.new_context(None)?;
    /// let kid = heap.alloc_str(root, "kid")?;
    /// heap.alloc_str(kid, "grandkid")?;
    /// print!("{}", heap.report_full(root)?);
    /// assert_eq!(heap.report_full(root)?.lines().count(), 3);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn report_full(&self, p: impl Into<AnyPtr>) -> Result<String, Error> {
        self.report_depth(p, None)
    }

    fn report_line(&self, out: &mut String, e: ReportEntry, max_depth: Option<usize>) {
        let slot = e.ptr.key.slot;
        let name = self.name_of(slot);
        let (size, blocks) = (
            self.total_size(e.ptr).unwrap_or(0),
            self.total_blocks(e.ptr).unwrap_or(0),
        );
        if e.depth == 0 {
            let full = if max_depth.is_none() { "full " } else { "" };
            let _ = writeln!(
                out,
                "{full}talloc report on '{name}' (total {size:6} bytes in {blocks:3} blocks)"
            );
        } else if e.is_ref {
            let _ = writeln!(
                out,
                "{:indent$}reference to: {name}",
                "",
                indent = e.depth * 4
            );
        } else {
            let refs = self.reference_count(e.ptr).unwrap_or(0);
            let _ = writeln!(
                out,
                "{:indent$}{name:<30} contains {size:6} bytes in {blocks:3} blocks (ref {refs}) #{}.{}",
                "",
                e.ptr.key.slot,
                e.ptr.key.gen,
                indent = e.depth * 4
            );
        }
    }

    /// A Graphviz DOT picture of a subtree: one box per object (name, own
    /// size), solid edges from parent to child, dashed edges from a
    /// reference's owner to the referenced object.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// let root = heap.new_context(None)?;
    /// heap.alloc_str(root, "kid")?;
    /// let dot = heap.dot(root)?;
    /// assert!(dot.starts_with("digraph talloc {"));
    /// assert_eq!(dot.matches(" -> ").count(), 1);
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn dot(&self, p: impl Into<AnyPtr>) -> Result<String, Error> {
        let root = self.slot(p.into().key)?;
        let mut out =
            String::from("digraph talloc {\n    node [shape=box, fontname=\"monospace\"];\n");
        self.walk(root, |slot, _| {
            let n = self.slots.node(slot);
            if n.has(flag::REF_HANDLE) {
                if let (Some(t), true) = (self.handle_target(slot), n.parent != NIL) {
                    let _ = writeln!(
                        out,
                        "    n{} -> n{} [style=dashed, label=\"ref\"];",
                        n.parent, t
                    );
                }
                return false;
            }
            let label = escape(self.name_of(slot));
            let _ = writeln!(
                out,
                "    n{slot} [label=\"{label}\\n{} bytes\"];",
                self.slots.own_size(slot)
            );
            if slot != root && n.parent != NIL {
                let _ = writeln!(out, "    n{} -> n{slot};", n.parent);
            }
            true
        });
        out.push_str("}\n");
        Ok(out)
    }

    /// Prints a leak report to stderr when the heap is dropped with objects
    /// still alive (`talloc_enable_leak_report` / `_full`); `None` turns it
    /// off.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// heap.enable_leak_report(Some(talloc::LeakReport::Full));
    /// heap.alloc_str(None, "forgotten")?;
    /// drop(heap); // prints "full talloc report on 'null_context' ..." to stderr
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn enable_leak_report(&mut self, kind: Option<LeakReport>) {
        self.leak_report = kind;
    }

    /// The leak report as text: every top-level object (C's null context),
    /// one line each or with their whole trees.
    ///
    /// ```
    /// # let mut heap = talloc::Talloc::new();
    /// heap.alloc_str(None, "forgotten")?;
    /// let text = heap.leak_report_text(talloc::LeakReport::Summary);
    /// assert!(text.contains("forgotten"));
    /// # Ok::<(), talloc::Error>(())
    /// ```
    pub fn leak_report_text(&self, kind: LeakReport) -> String {
        let top: Vec<AnyPtr> = self.top_level().collect();
        let size: usize = top.iter().map(|&p| self.total_size(p).unwrap_or(0)).sum();
        let blocks: usize = top.iter().map(|&p| self.total_blocks(p).unwrap_or(0)).sum();
        let full = kind == LeakReport::Full;
        let mut out = format!(
            "{}talloc report on 'null_context' (total {size:6} bytes in {blocks:3} blocks)\n",
            if full { "full " } else { "" }
        );
        let max_depth = if full { None } else { Some(0) };
        for p in top {
            let _ = self.report_depth_cb(p, max_depth, |heap, e| {
                let e = ReportEntry {
                    depth: e.depth + 1,
                    ..e
                };
                heap.report_line(&mut out, e, max_depth);
            });
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
