//! The tree walks against what they promise, on random trees: descendants
//! come in the order a free runs destructors, ancestors follow the parent
//! links, children of a type are the children of that type, and the top
//! level is exactly the parentless objects.

use std::cell::RefCell;
use std::rc::Rc;

use proptest::prelude::*;
use talloc::{AnyPtr, Talloc};

/// A random forest: node i's parent is an earlier node or none; odd nodes
/// are strings, even ones numbers.
fn forest() -> impl Strategy<Value = Vec<Option<prop::sample::Index>>> {
    prop::collection::vec(
        prop::option::weighted(0.85, any::<prop::sample::Index>()),
        1..40,
    )
}

fn build(heap: &mut Talloc, shape: &[Option<prop::sample::Index>]) -> Vec<AnyPtr> {
    let mut nodes: Vec<AnyPtr> = Vec::new();
    for (i, p) in shape.iter().enumerate() {
        let parent = p.filter(|_| i > 0).map(|ix| nodes[ix.index(i)]);
        let node = if i % 2 == 1 {
            heap.alloc_str(parent, &format!("s{i}")).unwrap().erase()
        } else {
            heap.alloc(parent, i as u64).unwrap().erase()
        };
        nodes.push(node);
    }
    nodes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn descendants_are_the_free_order(shape in forest()) {
        let mut heap = Talloc::new();
        let nodes = build(&mut heap, &shape);
        let root = nodes[0];
        let walked: Vec<AnyPtr> = heap.descendants(root).unwrap().collect();
        prop_assert_eq!(walked.len() + 1, heap.total_blocks(root).unwrap());
        // Every descendant once, and each after its parent.
        for (i, &d) in walked.iter().enumerate() {
            let parent = heap.parent(d).unwrap().unwrap();
            prop_assert!(parent == root || walked[..i].contains(&parent));
        }
        // The order a free runs destructors in.
        let log = Rc::new(RefCell::new(Vec::new()));
        for &d in &walked {
            let log = log.clone();
            if let Ok(n) = heap.downcast::<u64>(d) {
                heap.set_destructor(n, move |_, me| { log.borrow_mut().push(me.erase()); Ok(()) }).unwrap();
            } else {
                let s = heap.downcast::<str>(d).unwrap();
                heap.set_destructor(s, move |_, me| { log.borrow_mut().push(me.erase()); Ok(()) }).unwrap();
            }
        }
        heap.free(root).unwrap();
        prop_assert_eq!(&*log.borrow(), &walked);
    }

    #[test]
    fn ancestors_children_and_top_level_agree_with_the_links(shape in forest()) {
        let mut heap = Talloc::new();
        let nodes = build(&mut heap, &shape);
        for &n in &nodes {
            let mut up = Vec::new();
            let mut at = heap.parent(n).unwrap();
            while let Some(p) = at {
                up.push(p);
                at = heap.parent(p).unwrap();
            }
            prop_assert_eq!(heap.ancestors(n).unwrap().collect::<Vec<_>>(), up);
            let strings: Vec<AnyPtr> = heap.children(n).unwrap().of_type::<str>().map(|s| s.erase()).collect();
            let want: Vec<AnyPtr> = heap.children(n).unwrap().filter(|&c| heap.downcast::<str>(c).is_ok()).collect();
            prop_assert_eq!(strings, want);
        }
        let mut top: Vec<AnyPtr> = heap.top_level().collect();
        let mut want: Vec<AnyPtr> = nodes.iter().copied().filter(|&n| heap.parent(n).unwrap().is_none()).collect();
        top.sort();
        want.sort();
        prop_assert_eq!(top, want);
        // Stealing to and from the top level keeps the list right.
        let last = *nodes.last().unwrap();
        heap.steal_any(None, last).unwrap();
        prop_assert_eq!(heap.top_level().next(), Some(last));
        heap.free(last).unwrap();
        prop_assert!(!heap.top_level().any(|p| p == last));
        prop_assert_eq!(heap.verify(), Ok(()));
    }
}
