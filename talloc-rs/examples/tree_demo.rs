//! A tour of talloc-rs: a small server's memory as one tree.
//!
//! ```text
//! cargo run --release -p talloc-rs --example tree_demo
//! ```
//!
//! A server context owns two connections; each connection owns a read buffer
//! and the name of its user. We print the tree, keep one buffer alive beyond
//! its connection (`steal`), close that connection (its destructor speaks),
//! and print the tree again, as a report and as a Graphviz picture. At the end
//! the heap checks its own invariants and is left empty, so the leak report
//! switched on at the start has nothing to say.

use std::error::Error;

use talloc::{LeakReport, Talloc};

/// The value of a connection object; its buffer and user are its children.
struct Connection {
    fd: i32,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut heap = Talloc::new();
    // Whatever is still alive when `heap` is dropped gets reported on stderr.
    heap.enable_leak_report(Some(LeakReport::Full));

    // The top of the tree: a plain context with a static name.
    let server = heap.new_context(None)?;
    heap.set_name_const(server, "server")?;

    // Two connections under it, each with a 4 KiB read buffer and a user name.
    let mut conns = Vec::new();
    for (i, user) in ["alice", "bob"].into_iter().enumerate() {
        let conn = heap.alloc(server, Connection { fd: 10 + i as i32 })?;
        heap.set_name(conn, format_args!("connection {}", i + 1))?; // a ".name" child, as in C
        let buf = heap.alloc_zeroed(conn, 4096)?;
        heap.set_name_const(buf, "read buffer")?;
        heap.alloc_str(conn, user)?; // a string is named by its text, as in C
        conns.push((conn, buf));
    }
    let (conn1, buf1) = conns[0];

    // A destructor runs when its object is freed, before the object's
    // children go; it gets the heap, so it can still read the object.
    heap.set_destructor(conn1, |heap, me| {
        let name = heap.name(me).unwrap_or("?").to_owned();
        println!("destructor: closing {name} (fd {})", heap[me].fd);
        Ok(())
    })?;

    println!("== the tree ==");
    print!("{}", heap.report_full(server)?);

    // Keep connection 1's buffer: it moves to the top level (O(1)) ...
    heap.steal(None, buf1)?;
    heap[buf1][..5].copy_from_slice(b"hello");
    // ... so freeing the connection takes its user string but not the buffer.
    println!("\n== free connection 1 ==");
    heap.free(conn1)?;
    assert!(!heap.contains(conn1), "the handle now reads as stale");

    println!("\n== after the free ==");
    print!("{}", heap.report_full(server)?);
    print!("{}", heap.report_full(buf1)?);
    let kept = String::from_utf8_lossy(&heap[buf1][..5]).into_owned();
    println!("the stolen buffer still starts with {kept:?}");

    println!("\n== the server's tree in Graphviz DOT (pipe it to `dot -Tsvg`) ==");
    print!("{}", heap.dot(server)?);

    // Links, counts and flags all agree; then everything goes.
    heap.verify()?;
    heap.free(server)?;
    heap.free(buf1)?;
    assert_eq!(heap.live_objects(), 0);
    println!("\nverify: ok; {} objects left", heap.live_objects());
    Ok(())
}
