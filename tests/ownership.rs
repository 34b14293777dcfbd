//! Model-based property test of talloc-rs's ownership rules.
//!
//! Random sequences of every heap operation (`talloc::strategy::Op`) run
//! against the heap and against a small, obviously-correct model that
//! implements the rules of the `Talloc` doc comments (T1–T21 of the book's
//! rules chapter, with the Rust port's documented choices). After every step the
//! test checks `heap.verify()`, what the operation returned, the liveness of
//! every handle ever issued, the parent, children (in order), size, name,
//! destructor, reference count, pool membership, memory limit and value of
//! every live object, the totals of every top-level object, pool usage, the
//! order of destructor calls, and that an operation that failed changed
//! nothing.
//!
//! 1,000 cases by default; `PROPTEST_CASES=n` changes it.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use talloc::strategy::{ops, tree, Applied, Handles, New, Op};
use talloc::{AnyPtr, Error, Talloc, TransferError, TransferRule};

// ----- the model -----------------------------------------------------------

/// A model object is named by its index in `Handles::issued`: every object
/// an operation creates is issued, so the two always line up.
type Id = usize;

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Value(u64),
    Local(u64),
    Bytes(Vec<u8>),
    Words(Vec<u32>),
    Str(String),
    Context,
    Pool,
    Pooled(u64),
    /// A reference handle to the object.
    Ref(Id),
}

#[derive(Clone, Debug, PartialEq)]
enum Name {
    Default,
    Const,
    /// Set with `set_name`: the string of this name chunk, while it lives.
    Chunk(Id),
}

#[derive(Clone, Debug)]
struct Node {
    alive: bool,
    val: Val,
    parent: Option<Id>,
    /// Newest first.
    children: Vec<Id>,
    /// Reference handles to this object, oldest first.
    refs: Vec<Id>,
    /// `Some(refuses)`.
    destructor: Option<bool>,
    name: Name,
    is_name_chunk: bool,
    /// Carved from a pool: (region, offset, capacity).
    carved: Option<(usize, usize, usize)>,
    /// The region of a pool (or pooled object).
    region: Option<usize>,
    limit: Option<usize>,
}

#[derive(Clone, Debug)]
struct Region {
    size: usize,
    end: usize,
    base: usize,
    count: u32,
    pool: Id,
}

#[derive(Default)]
struct Model {
    nodes: Vec<Node>,
    regions: Vec<Option<Region>>,
    /// Destructor calls, in order.
    log: Vec<Id>,
    /// The heap's handles, to build expected errors.
    ptrs: Vec<AnyPtr>,
}

type Res<T = ()> = Result<T, Error>;

impl Model {
    fn n(&self, id: Id) -> &Node {
        &self.nodes[id]
    }

    fn m(&mut self, id: Id) -> &mut Node {
        &mut self.nodes[id]
    }

    fn pick(&self, n: usize) -> Option<Id> {
        (!self.nodes.is_empty()).then(|| n % self.nodes.len())
    }

    fn live(&self, id: Id) -> Res {
        if self.n(id).alive {
            Ok(())
        } else {
            Err(Error::Stale)
        }
    }

    fn is_ref(&self, id: Id) -> bool {
        matches!(self.n(id).val, Val::Ref(_))
    }

    /// Whether `x` is `anc` or below it.
    fn within(&self, x: Id, anc: Id) -> bool {
        let mut at = Some(x);
        while let Some(a) = at {
            if a == anc {
                return true;
            }
            at = self.n(a).parent;
        }
        false
    }

    fn size(&self, id: Id) -> usize {
        match &self.n(id).val {
            Val::Value(_) | Val::Local(_) | Val::Pooled(_) => 8,
            Val::Bytes(b) => b.len(),
            Val::Words(w) => 4 * w.len(),
            Val::Str(s) => s.len() + 1,
            Val::Context | Val::Pool | Val::Ref(_) => 0,
        }
    }

    fn subtree(&self, root: Id) -> Vec<Id> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(x) = stack.pop() {
            out.push(x);
            stack.extend(self.n(x).children.iter().rev());
        }
        out
    }

    fn unlink(&mut self, id: Id) {
        if let Some(p) = self.m(id).parent.take() {
            self.m(p).children.retain(|&c| c != id);
        }
    }

    fn link(&mut self, id: Id, parent: Option<Id>) {
        self.m(id).parent = parent;
        if let Some(p) = parent {
            self.m(p).children.insert(0, id);
        }
    }

    fn move_to(&mut self, id: Id, parent: Option<Id>) {
        self.unlink(id);
        self.link(id, parent);
    }

    fn add(&mut self, val: Val, parent: Option<Id>) -> Id {
        let id = self.nodes.len();
        self.nodes.push(Node {
            alive: true,
            val,
            parent: None,
            children: Vec::new(),
            refs: Vec::new(),
            destructor: None,
            name: Name::Default,
            is_name_chunk: false,
            carved: None,
            region: None,
            limit: None,
        });
        self.link(id, parent);
        id
    }

    // ----- pools and limits -----

    /// The region new children of `parent` are carved from.
    fn home_region(&self, parent: Option<Id>) -> Option<usize> {
        let n = self.n(parent?);
        n.region.or(n.carved.map(|c| c.0))
    }

    fn carve(&mut self, region: Option<usize>, size: usize) -> Option<(usize, usize, usize)> {
        let r = region?;
        let reg = self.regions[r].as_mut().expect("live region");
        let off = reg.end.next_multiple_of(8);
        if off + size > reg.size {
            return None;
        }
        let cap = granule(off, size, reg.size);
        reg.end = off + cap;
        reg.count += 1;
        Some((r, off, cap))
    }

    /// Where a carved object that outgrows its bytes goes in its region,
    /// in C's order: to the region's start if it is the only member, in
    /// place if it is the last, to a new range; `None`: out of the pool.
    fn pool_grow(&self, x: Id, new: usize) -> Option<usize> {
        let (r, off, cap) = self.n(x).carved?;
        let reg = self.regions[r].as_ref().expect("live region");
        let members = reg.count - u32::from(self.n(reg.pool).alive);
        let start = reg.base.next_multiple_of(8);
        if members == 1 && start + new <= reg.size {
            return Some(start);
        }
        if off + cap == reg.end && off + new <= reg.size {
            return Some(off);
        }
        let next = reg.end.next_multiple_of(8);
        (next + new <= reg.size).then_some(next)
    }

    /// One object of a region is gone (talloc.c `_tc_free_poolmem`).
    fn region_put(&mut self, r: usize, off: usize, cap: usize) {
        let pool = self.regions[r].as_ref().expect("live region").pool;
        let pool_alive = self.n(pool).alive;
        let reg = self.regions[r].as_mut().expect("live region");
        reg.count -= 1;
        if off + cap == reg.end && off >= reg.base {
            reg.end = off;
        }
        // Only the pool itself left: its whole region is free again. (Not
        // when the pool is gone and one carved object is left: that object
        // still uses its bytes.)
        if reg.count == 1 && pool_alive {
            reg.end = reg.base;
        }
        if reg.count == 0 {
            self.regions[r] = None;
        }
    }

    /// Bytes the subtree counts against memory limits.
    fn charged(&self, root: Id) -> usize {
        let mut total = 0;
        for x in self.subtree(root) {
            let n = self.n(x);
            if let Some(r) = n.region {
                total += self.regions[r].as_ref().expect("live region").size;
            } else if n.carved.is_none() {
                total += self.size(x);
            }
        }
        total
    }

    /// Checks every limit from `from` up for `bytes` more.
    fn limit_check(&self, from: Id, bytes: usize) -> Res {
        let mut at = Some(from);
        while let Some(a) = at {
            if let Some(max) = self.n(a).limit {
                if self.charged(a) + bytes > max {
                    let context = self.ptrs[a];
                    return Err(Error::MemoryLimit { context });
                }
            }
            at = self.n(a).parent;
        }
        Ok(())
    }

    // ----- freeing -----

    fn release(&mut self, x: Id) {
        // References that escaped the subtree (a refusing child took them
        // along) die with their target.
        while let Some(&h) = self.n(x).refs.last() {
            self.drop_handle(h);
        }
        self.m(x).alive = false;
        if let Val::Ref(t) = self.n(x).val {
            self.m(t).refs.retain(|&h| h != x);
        }
        if let Some((r, off, cap)) = self.n(x).carved {
            self.region_put(r, off, cap);
        }
        if let Some(r) = self.n(x).region {
            let cap = if self.n(x).val == Val::Pool { 0 } else { 8 };
            self.region_put(r, 0, cap);
        }
    }

    fn drop_handle(&mut self, h: Id) {
        self.unlink(h);
        self.release(h);
    }

    /// The reference handles of `x` held from outside its subtree, oldest
    /// first.
    fn outside_refs(&self, x: Id) -> Vec<Id> {
        let refs = self.n(x).refs.iter().copied();
        refs.filter(|&h| !self.within(h, x)).collect()
    }

    /// `talloc_free`: references held inside the object's own subtree do
    /// not count.
    fn free(&mut self, x: Id) -> Res {
        self.live(x)?;
        let outside = self.outside_refs(x).len();
        if outside > 0 {
            if self.n(x).parent.is_none() && outside == 1 {
                return self.unlink_from(None, x);
            }
            return Err(Error::HasReferences { count: outside });
        }
        self.free_subtree(x)
    }

    fn free_subtree(&mut self, x: Id) -> Res {
        if let Some(refuses) = self.n(x).destructor {
            self.log.push(x);
            if refuses {
                return Err(Error::Refused);
            }
            self.m(x).destructor = None;
        }
        let refuge = self.n(x).parent;
        self.unlink(x);
        self.drain(x, refuge, true);
        Ok(())
    }

    /// Frees the children of `x`, newest first, depth first; a child that
    /// survives moves to `refuge` (T4) or to its newest reference's owner
    /// (T5), chosen before anything is dropped. A child whose newest
    /// reference is its own stays put and is tried again, as in C.
    fn drain(&mut self, x: Id, refuge: Option<Id>, release: bool) {
        while let Some(&c) = self.n(x).children.first() {
            let self_home = self.n(c).refs.last().map(|&h| self.n(h).parent) == Some(Some(c));
            let mut kept = false;
            while let Some(&h) = self.n(c).refs.last() {
                let owner = self.n(h).parent;
                let inside = self.within(h, c);
                self.drop_handle(h);
                if !inside {
                    if !self_home {
                        // An owner-less reference: C's fallback, the refuge.
                        let dest = owner.or(refuge.filter(|&r| self.n(r).alive));
                        self.move_to(c, dest);
                    }
                    kept = true;
                    break;
                }
            }
            if kept {
                continue;
            }
            if let Some(refuses) = self.n(c).destructor {
                self.log.push(c);
                if refuses {
                    if !self_home {
                        let dest = refuge.filter(|&r| self.n(r).alive);
                        self.move_to(c, dest);
                    }
                    continue;
                }
                self.m(c).destructor = None;
            }
            self.unlink(c);
            self.drain(c, Some(x), true);
        }
        if release {
            self.release(x);
        }
    }

    /// `Talloc::take`: refused while anything references `x`; otherwise it
    /// ends as a free does, but its children (its name chunk excepted) move
    /// to its parent first, oldest first so that their order stays.
    fn take(&mut self, x: Id) -> Res<Applied> {
        if matches!(self.n(x).val, Val::Bytes(_) | Val::Words(_) | Val::Str(_)) {
            return Ok(Applied::Skipped);
        }
        if !self.n(x).refs.is_empty() {
            let count = self.n(x).refs.len();
            return Err(Error::HasReferences { count });
        }
        if let Some(refuses) = self.n(x).destructor {
            self.log.push(x);
            if refuses {
                return Err(Error::Refused);
            }
            self.m(x).destructor = None;
        }
        let chunk = match self.n(x).name {
            Name::Chunk(c) if self.n(c).alive && self.n(c).parent == Some(x) => Some(c),
            _ => None,
        };
        let parent = self.n(x).parent;
        let kids: Vec<Id> = self.n(x).children.iter().rev().copied().collect();
        for c in kids.into_iter().filter(|&c| Some(c) != chunk) {
            self.move_to(c, parent);
        }
        self.unlink(x);
        self.drain(x, parent, true);
        Ok(Applied::Done)
    }

    /// `talloc_unlink(ctx, x)`, both live.
    fn unlink_from(&mut self, ctx: Option<Id>, x: Id) -> Res {
        let own = self.n(x).refs.iter().rev().copied();
        if let Some(h) = own.clone().find(|&h| self.n(h).parent == ctx) {
            return self.free(h);
        }
        if self.n(x).parent != ctx {
            return Err(Error::NotAParent);
        }
        // A newest self-reference is dropped and x stays, as in C.
        if let Some(&h) = self.n(x).refs.last() {
            if self.n(h).parent == Some(x) {
                return self.free(h);
            }
        }
        // The newest reference from outside x's subtree becomes the parent
        // link; with none, x goes.
        let Some(&h) = self.outside_refs(x).last() else {
            return self.free_subtree(x);
        };
        let owner = self.n(h).parent;
        self.free(h)?;
        self.move_to(x, owner);
        Ok(())
    }

    fn steal(&mut self, to: Option<Id>, x: Id) -> Res {
        self.live(x)?;
        if let Some(t) = to {
            self.live(t)?;
            if self.within(t, x) {
                return Err(Error::Loop);
            }
            if self.is_ref(t) {
                return Err(Error::IsReference);
            }
        }
        self.move_to(x, to);
        Ok(())
    }

    /// Renames `x`; the old name chunk is freed if it is still its child.
    fn rename(&mut self, x: Id, name: Name) {
        let old = std::mem::replace(&mut self.m(x).name, name);
        if let Name::Chunk(c) = old {
            if self.n(c).alive && self.n(c).parent == Some(x) {
                let _ = self.free(c);
            }
        }
    }

    // ----- the operations -----

    fn alloc(&mut self, parent: Option<Id>, what: &New) -> Res<Id> {
        if let Some(p) = parent {
            self.live(p)?;
            if self.is_ref(p) {
                return Err(Error::IsReference);
            }
        }
        let (val, size) = match what {
            New::Value(v) => (Val::Value(*v), 8),
            New::Local(v) => (Val::Local(*v), 8),
            New::Bytes(len, fill) => {
                let bytes = (0..*len).map(|i| fill.wrapping_add(i as u8)).collect();
                (Val::Bytes(bytes), *len)
            }
            New::Words(len) => (Val::Words((0..*len as u32).collect()), 4 * len),
            New::Str(s) => (Val::Str(s.clone()), s.len() + 1),
            New::Context => (Val::Context, 0),
            New::Pool(size) => (Val::Pool, *size),
            New::PooledObject(v, n, bytes) => (Val::Pooled(*v), 16 + 16 * n + bytes),
        };
        let region = self.home_region(parent);
        let carved = match val {
            Val::Pool | Val::Pooled(_) => None,
            // A context under a pool is a member that takes no bytes.
            Val::Context => region.map(|r| {
                let reg = self.regions[r].as_mut().expect("live region");
                reg.count += 1;
                (r, reg.end, 0)
            }),
            _ => self.carve(region, size),
        };
        if let (Some(p), None) = (parent, carved) {
            self.limit_check(p, size)?;
        }
        let id = self.add(val, parent);
        self.m(id).carved = carved;
        let (end, pool_val) = match what {
            New::Pool(_) => (0, true),
            // The body, a u64, takes one granule.
            New::PooledObject(..) => (16, true),
            _ => (0, false),
        };
        if pool_val {
            self.regions.push(Some(Region {
                size,
                end,
                base: end,
                count: 1,
                pool: id,
            }));
            self.m(id).region = Some(self.regions.len() - 1);
        }
        Ok(id)
    }

    fn reparent(&mut self, old: Option<Id>, to: Option<Id>, x: Id) -> Res {
        if let Some(o) = old {
            self.live(o)?;
        }
        if self.n(x).parent == old {
            return self.steal(to, x);
        }
        let own = self.n(x).refs.iter().rev().copied();
        let Some(h) = own.clone().find(|&h| self.n(h).parent == old) else {
            return Err(Error::NotAParent);
        };
        self.steal(to, h)
    }

    fn resize(&mut self, x: Id, len: usize) -> Res<Applied> {
        let old = self.size(x);
        let new = match &self.n(x).val {
            Val::Bytes(_) => len,
            Val::Words(_) => 4 * len,
            Val::Str(s) => s.len() + 1 + len % 8,
            _ => return Ok(Applied::Skipped),
        };
        let carved = self.n(x).carved;
        let fits = carved.is_some_and(|(_, _, cap)| new <= cap);
        let grow_to = if fits { None } else { self.pool_grow(x, new) };
        let stays = fits || grow_to.is_some();
        let before = if carved.is_some() { 0 } else { old };
        let after = if stays { 0 } else { new };
        if after > before {
            self.limit_check(x, after - before)?;
        }
        if let Some((r, off, cap)) = carved {
            let reg = self.regions[r].as_mut().expect("live region");
            if let Some(to) = grow_to {
                let cap = granule(to, new, reg.size);
                reg.end = to + cap;
                self.m(x).carved = Some((r, to, cap));
            } else if !stays {
                self.region_put(r, off, cap);
                self.m(x).carved = None;
            } else if new < old && off + cap == reg.end {
                // A shrinking last member gives its tail back.
                let cap = granule(off, new, reg.size);
                reg.end = off + cap;
                self.m(x).carved = Some((r, off, cap));
            }
        }
        match &mut self.m(x).val {
            Val::Bytes(b) => b.resize(len, 0),
            Val::Words(w) => w.resize(len, 0),
            Val::Str(s) => s.push_str(&"+".repeat(len % 8)),
            _ => unreachable!(),
        }
        Ok(Applied::Done)
    }

    /// The first object of the subtree that cannot move to another heap.
    fn transfer_refusal(&self, root: Id) -> Option<(Id, TransferRule)> {
        for x in self.subtree(root) {
            let n = self.n(x);
            let rule = if n.region.is_some() || n.carved.is_some() {
                TransferRule::InPool
            } else if n.destructor.is_some() {
                TransferRule::Destructor
            } else if matches!(n.val, Val::Local(_)) {
                TransferRule::NotSend
            } else if n.refs.iter().any(|&h| !self.within(h, root))
                || matches!(n.val, Val::Ref(t) if !self.within(t, root))
            {
                TransferRule::OutsideReference
            } else {
                continue;
            };
            return Some((x, rule));
        }
        None
    }

    fn transfer(&mut self, x: Id, to: Option<Id>) -> Res {
        if let Some(t) = to {
            self.live(t)?;
        }
        if let Some((object, rule)) = self.transfer_refusal(x) {
            let name = self.name_of(object);
            let object = self.ptrs[object];
            return Err(Error::Transfer(TransferError { object, name, rule }));
        }
        let old = self.subtree(x);
        // A name chunk outside the subtree does not travel, its text does:
        // a new name chunk, the newest child of its object.
        let texts: HashMap<Id, String> = old
            .iter()
            .filter_map(|&o| match self.n(o).name {
                Name::Chunk(c) if self.n(c).alive && !old.contains(&c) => {
                    Some((o, self.name_of(o)))
                }
                _ => None,
            })
            .filter(|(o, text)| {
                // It is made while the subtree is put back together: the
                // limits above it in the subtree count 0 bytes then.
                let mut at = self.n(*o).parent.filter(|_| *o != x);
                while let Some(a) = at {
                    if self.n(a).limit.is_some_and(|max| text.len() + 1 > max) {
                        return false;
                    }
                    at = self.n(a).parent.filter(|_| a != x);
                }
                true
            })
            .collect();
        // The new objects, in the order `apply` issues them: pre-order of the
        // new subtree, a new name chunk first among its object's children.
        let mut order: Vec<(Id, bool)> = Vec::new();
        let mut stack = vec![x];
        while let Some(o) = stack.pop() {
            order.push((o, false));
            if texts.contains_key(&o) {
                order.push((o, true));
            }
            stack.extend(self.n(o).children.iter().rev());
        }
        let base = self.nodes.len();
        let new: HashMap<(Id, bool), Id> = order
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, base + i))
            .collect();
        let dest = to.filter(|&t| !new.contains_key(&(t, false)) && !self.is_ref(t));
        self.unlink(x);
        for &(o, chunk) in &order {
            let mut n = self.n(o).clone();
            if chunk {
                let owner = new[&(o, false)];
                let text = texts[&o].clone();
                let c = self.add(Val::Str(text), None);
                self.m(c).parent = Some(owner);
                self.m(c).is_name_chunk = true;
                continue;
            }
            n.parent = n.parent.map(|p| new[&(p, false)]);
            n.children = n.children.iter().map(|c| new[&(*c, false)]).collect();
            n.refs = n.refs.iter().map(|h| new[&(*h, false)]).collect();
            if let Val::Ref(t) = n.val {
                n.val = Val::Ref(new[&(t, false)]);
            }
            if let Name::Chunk(c) = n.name {
                n.name = match new.get(&(c, false)) {
                    Some(&c) => Name::Chunk(c),
                    None => Name::Default,
                };
            }
            if let Some(&c) = new.get(&(o, true)) {
                n.children.insert(0, c);
                n.name = Name::Chunk(c);
            }
            self.nodes.push(n);
            self.m(o).alive = false;
        }
        self.link(base, dest);
        Ok(())
    }

    /// What `op.apply` should do.
    fn apply(&mut self, op: &Op) -> Res<Applied> {
        let opt = |m: &Model, n: &Option<usize>| n.and_then(|n| m.pick(n));
        let object = match op {
            Op::Alloc(parent, what) => {
                let parent = opt(self, parent);
                return self.alloc(parent, what).map(|_| Applied::Done);
            }
            Op::Free(x) | Op::FreeChildren(x) | Op::ClearDestructor(x) | Op::SetNameConst(x) => x,
            Op::Steal(_, x) | Op::Reparent(_, _, x) | Op::Reference(_, x) | Op::Unlink(_, x) => x,
            Op::SetDestructor(x, _) | Op::SetDestructorFn(x, _) => x,
            Op::SetName(x, _) | Op::Resize(x, _) => x,
            Op::SetMemlimit(x, _) | Op::Transfer(x, _) | Op::Take(x) => x,
        };
        let Some(x) = self.pick(*object) else {
            return Ok(Applied::Skipped);
        };
        self.live(x)?;
        let typed = matches!(
            op,
            Op::Reparent(..)
                | Op::Reference(..)
                | Op::SetDestructor(..)
                | Op::SetDestructorFn(..)
                | Op::Take(..)
        );
        if typed && self.is_ref(x) {
            return Ok(Applied::Skipped);
        }
        match op {
            Op::Alloc(..) => unreachable!(),
            Op::Free(_) => self.free(x)?,
            Op::FreeChildren(_) => {
                let chunk = match self.n(x).name {
                    Name::Chunk(c) if self.n(c).alive && self.n(c).parent == Some(x) => Some(c),
                    _ => None,
                };
                if let Some(c) = chunk {
                    self.unlink(c);
                }
                let refuge = self.n(x).parent;
                self.drain(x, refuge, false);
                if let Some(c) = chunk {
                    self.link(c, Some(x));
                }
            }
            Op::Steal(to, _) => {
                let to = opt(self, to);
                self.steal(to, x)?
            }
            Op::Reparent(old, to, _) => {
                let (old, to) = (opt(self, old), opt(self, to));
                self.reparent(old, to, x)?
            }
            Op::Reference(owner, _) => {
                let owner = opt(self, owner);
                if let Some(o) = owner {
                    self.live(o)?;
                    if self.is_ref(o) {
                        return Err(Error::IsReference);
                    }
                }
                let h = self.add(Val::Ref(x), owner);
                self.m(x).refs.push(h);
            }
            Op::Unlink(ctx, _) => {
                let ctx = opt(self, ctx);
                if let Some(c) = ctx {
                    self.live(c)?;
                }
                self.unlink_from(ctx, x)?
            }
            Op::SetDestructor(_, refuses) | Op::SetDestructorFn(_, refuses) => {
                self.m(x).destructor = Some(*refuses)
            }
            Op::ClearDestructor(_) => self.m(x).destructor = None,
            Op::SetName(_, name) => {
                let chunk = self.alloc(Some(x), &New::Str(name.clone()))?;
                self.m(chunk).is_name_chunk = true;
                self.rename(x, Name::Chunk(chunk));
            }
            Op::SetNameConst(_) => self.rename(x, Name::Const),
            Op::Resize(_, len) => return self.resize(x, *len),
            Op::SetMemlimit(_, max) => self.m(x).limit = (*max > 0).then_some(*max),
            Op::Transfer(_, to) => {
                let to = opt(self, to);
                self.transfer(x, to)?
            }
            Op::Take(_) => return self.take(x),
        }
        Ok(Applied::Done)
    }

    // ----- what the heap should look like -----

    fn name_of(&self, x: Id) -> String {
        let n = self.n(x);
        match n.name {
            Name::Const => return "const name".into(),
            Name::Chunk(c) if self.n(c).alive => match &self.n(c).val {
                Val::Str(s) => return s.clone(),
                v => panic!("name chunk holds {v:?}"),
            },
            Name::Chunk(_) | Name::Default => {}
        }
        match &n.val {
            Val::Ref(_) => talloc::REFERENCE_NAME,
            _ if n.is_name_chunk => talloc::NAME_CHUNK_NAME,
            Val::Context => "talloc_new",
            Val::Pool => "talloc_pool",
            Val::Str(s) => s,
            Val::Value(_) | Val::Pooled(_) => "u64",
            Val::Local(_) => "Rc<u64>",
            Val::Bytes(_) => "[u8]",
            Val::Words(_) => "[u32]",
        }
        .to_string()
    }

    fn observe(&self) -> Snapshot {
        let objects = (0..self.nodes.len())
            .map(|x| {
                let n = self.n(x);
                n.alive.then(|| Object {
                    parent: n.parent,
                    children: n.children.clone(),
                    size: self.size(x),
                    name: self.name_of(x),
                    destructor: n.destructor.is_some(),
                    refs: n.refs.len(),
                    pooled: n.carved.is_some(),
                    limit: n.limit.map(|max| (max, self.charged(x))),
                    pool: n.region.map(|r| {
                        let r = self.regions[r].as_ref().expect("live region");
                        (r.size, r.end, r.count)
                    }),
                    value: match &n.val {
                        Val::Value(v) | Val::Pooled(v) => Some(Value::U64(*v)),
                        Val::Local(v) => Some(Value::Rc(*v)),
                        Val::Bytes(b) => Some(Value::Bytes(b.clone())),
                        Val::Words(w) => Some(Value::Words(w.clone())),
                        Val::Str(s) => Some(Value::Str(s.clone())),
                        _ => None,
                    },
                })
            })
            .collect::<Vec<_>>();
        let top: BTreeSet<Id> = (0..self.nodes.len())
            .filter(|&x| self.n(x).alive && self.n(x).parent.is_none())
            .collect();
        let totals = top
            .iter()
            .map(|&t| {
                let sub = self.subtree(t);
                (sub.iter().map(|&x| self.size(x)).sum(), sub.len())
            })
            .collect();
        Snapshot {
            live_objects: self.nodes.iter().filter(|n| n.alive).count(),
            regions: self.regions.iter().flatten().count(),
            objects,
            top,
            totals,
        }
    }
}

// ----- what the heap looks like ---------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Value {
    U64(u64),
    Rc(u64),
    Bytes(Vec<u8>),
    Words(Vec<u32>),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Object {
    parent: Option<Id>,
    children: Vec<Id>,
    size: usize,
    name: String,
    destructor: bool,
    refs: usize,
    pooled: bool,
    limit: Option<(usize, usize)>,
    pool: Option<(usize, usize, u32)>,
    value: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    live_objects: usize,
    regions: usize,
    /// Per issued handle: `None` if it is stale.
    objects: Vec<Option<Object>>,
    top: BTreeSet<Id>,
    /// `(total_size, total_blocks)` of each top-level object, in `top` order.
    totals: Vec<(usize, usize)>,
}

/// Unknown objects (not issued: a bug) show as `usize::MAX`.
fn observe(heap: &Talloc, issued: &[AnyPtr]) -> Snapshot {
    let ids: HashMap<AnyPtr, Id> = issued.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let id = |p: AnyPtr| ids.get(&p).copied().unwrap_or(usize::MAX);
    let objects = issued
        .iter()
        .map(|&p| {
            heap.contains(p).then(|| Object {
                parent: heap.parent(p).unwrap().map(id),
                children: heap.children(p).unwrap().map(id).collect(),
                size: heap.size(p).unwrap(),
                name: heap.name(p).unwrap().to_string(),
                destructor: heap.has_destructor(p).unwrap(),
                refs: heap.reference_count(p).unwrap(),
                pooled: heap.is_pooled(p).unwrap(),
                limit: heap.memlimit(p).unwrap().map(|m| (m.max, m.used)),
                pool: heap.pool_usage(p).ok().map(|u| (u.size, u.used, u.objects)),
                value: if let Ok(v) = heap.downcast::<u64>(p) {
                    Some(Value::U64(heap[v]))
                } else if let Ok(v) = heap.downcast::<Rc<u64>>(p) {
                    Some(Value::Rc(*heap[v]))
                } else if let Ok(v) = heap.downcast::<[u8]>(p) {
                    Some(Value::Bytes(heap[v].to_vec()))
                } else if let Ok(v) = heap.downcast::<[u32]>(p) {
                    Some(Value::Words(heap[v].to_vec()))
                } else if let Ok(v) = heap.downcast::<str>(p) {
                    Some(Value::Str(heap[v].to_string()))
                } else {
                    None
                },
            })
        })
        .collect();
    let top: BTreeSet<Id> = heap.top_level().map(id).collect();
    let totals = top
        .iter()
        .map(|&t| {
            let p = issued[t];
            (heap.total_size(p).unwrap(), heap.total_blocks(p).unwrap())
        })
        .collect();
    Snapshot {
        live_objects: heap.live_objects(),
        regions: heap.pool_regions(),
        objects,
        top,
        totals,
    }
}

/// The first difference between the heap and the model, if any.
fn first_difference(heap: &Snapshot, model: &Snapshot) -> Option<String> {
    for (id, (h, m)) in heap.objects.iter().zip(&model.objects).enumerate() {
        if h != m {
            return Some(format!("object {id}:\n  heap:  {h:?}\n  model: {m:?}"));
        }
    }
    let (h, m) = (heap, model);
    if (&h.top, &h.totals) != (&m.top, &m.totals) {
        let (ht, mt) = ((&h.top, &h.totals), (&m.top, &m.totals));
        return Some(format!(
            "top level (ids, totals):\n  heap:  {ht:?}\n  model: {mt:?}"
        ));
    }
    if (h.live_objects, h.regions) != (m.live_objects, m.regions) {
        let (hl, ml) = ((h.live_objects, h.regions), (m.live_objects, m.regions));
        return Some(format!(
            "(live objects, pool regions): heap {hl:?}, model {ml:?}"
        ));
    }
    None
}

// ----- the test -------------------------------------------------------------

/// Runs `steps` on a heap and on the model, checking everything after each.
fn run(steps: &[Op]) -> Result<(), TestCaseError> {
    let mut heap = Talloc::new();
    let mut handles = Handles::new();
    let mut model = Model::default();
    for (i, op) in steps.iter().enumerate() {
        let before = observe(&heap, &handles.issued);
        let got = op.apply(&mut heap, &mut handles);
        prop_assert_eq!(heap.verify(), Ok(()), "step {}: {:?} -> {:?}", i, op, got);
        model.ptrs = handles.issued.clone();
        let want = model.apply(op);
        prop_assert_eq!(&got, &want, "step {}: {:?}", i, op);
        prop_assert_eq!(
            handles.issued.len(),
            model.nodes.len(),
            "step {}: {:?}: handles issued",
            i,
            op
        );
        let after = observe(&heap, &handles.issued);
        if got.is_err() {
            prop_assert_eq!(
                &before,
                &after,
                "step {}: {:?} failed but changed the heap",
                i,
                op
            );
        }
        if let Some(diff) = first_difference(&after, &model.observe()) {
            return Err(TestCaseError::fail(format!(
                "step {i}: {op:?} -> {got:?}: {diff}"
            )));
        }
        let ids: HashMap<AnyPtr, Id> = handles
            .issued
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, i))
            .collect();
        let calls: Vec<Id> = handles
            .destructor_calls
            .borrow()
            .iter()
            .map(|p| ids[p])
            .collect();
        prop_assert_eq!(&calls, &model.log, "step {}: {:?}: destructor calls", i, op);
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let mut config = if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default() // reads PROPTEST_CASES
    } else {
        ProptestConfig::with_cases(1000)
    };
    config.failure_persistence = None;
    config
}

proptest! {
    #![proptest_config(config())]

    /// Random trees, then random operations, against the model.
    #[test]
    fn heap_follows_the_model(shape in tree(6), steps in ops(1..48)) {
        let mut all = shape.ops();
        all.extend(steps);
        run(&all)?;
    }
}

// ----- regressions ----------------------------------------------------------
//
// Minimal cases, replayed through the same model check. Operands are
// indices into the handles issued so far (`Handles::issued`), so the
// comments number the objects in the order they are made.

/// Replays `steps` from an empty heap, failing with the model's verdict.
fn replay(steps: &[Op]) {
    if let Err(e) = run(steps) {
        panic!("{e}");
    }
}

/// Found by the property (against the first talloc-rs): a name chunk freed
/// by hand left its owner's name pointing at a vacant slot (`name()`
/// panicked on an underflow; once the slot was reused, `set_name` freed
/// the unrelated object in it). Fixed in a36f411 (names by key).
#[test]
fn regression_name_chunk_freed_by_hand() {
    replay(&[
        Op::Alloc(None, New::Context), // 0
        Op::SetName(0, "conn".into()), // 1: the name chunk of 0
        Op::Free(1),
        Op::Alloc(None, New::Value(7)), // 2: may reuse the chunk's slot
        Op::SetName(0, "again".into()), // 3: must not free 2
    ]);
}

/// Found by the property (against the first talloc-rs): freeing a
/// top-level object whose only reference is held by itself made it its own
/// parent (a cycle). Fixed in a36f411 (references held inside the subtree
/// go with it).
#[test]
fn regression_free_of_self_referenced_object() {
    replay(&[
        Op::Alloc(None, New::Context),    // 0
        Op::Reference(Some(0), 0),        // 1: 0 references itself
        Op::Alloc(Some(0), New::Context), // 2
        Op::Reference(Some(2), 0),        // 3: and its child references it
        Op::Free(0),
    ]);
}

/// Found by the property: `free_children` takes the object's name chunk
/// out of the tree while the children go, with no memory-limit
/// accounting. A child referenced from the name chunk survives under it
/// (rule T5), and its bytes drop off the books of every limit above:
/// `verify()` reports `LimitUsage` (usage 2 recorded, 12 counted).
#[test]
fn regression_free_children_keeps_limits_when_a_child_moves_under_the_name() {
    replay(&[
        Op::Alloc(None, New::Context), // 0
        Op::SetMemlimit(0, 1000),
        Op::Alloc(Some(0), New::Context),      // 1
        Op::SetName(1, "n".into()),            // 2: the name chunk of 1
        Op::Alloc(Some(1), New::Bytes(10, 0)), // 3
        Op::Reference(Some(2), 3),             // 4: the name chunk references 3
        Op::FreeChildren(1),                   // 3 survives under the name chunk
    ]);
}

/// A pool member that shrinks, then grows back within the bytes carved for
/// it, stays in the pool, yet `realloc` charges the limits above for the
/// new size: `verify()` reports `LimitUsage` (80 recorded, 64 counted).
#[test]
fn regression_pool_member_regrowing_in_place_is_not_charged() {
    replay(&[
        Op::Alloc(None, New::Context), // 0
        Op::SetMemlimit(0, 1000),
        Op::Alloc(Some(0), New::Pool(64)),     // 1
        Op::Alloc(Some(1), New::Bytes(16, 0)), // 2: carved from the pool
        Op::Resize(2, 8),
        Op::Resize(2, 16), // still fits its 16 bytes: stays in the pool
    ]);
}

/// A detach and attach puts a target's references back in the subtree's
/// pre-order instead of the order they were made, so "the newest
/// reference" changes: after the transfer, unlinking 1 from its parent
/// gives it to the owner of the older reference (2) instead of the newest
/// (3).
#[test]
fn regression_transfer_keeps_the_order_of_references() {
    replay(&[
        Op::Alloc(None, New::Context),    // 0
        Op::Alloc(Some(0), New::Context), // 1
        Op::Alloc(Some(0), New::Context), // 2
        Op::Alloc(Some(0), New::Context), // 3
        Op::Reference(Some(2), 1),        // 4: older
        Op::Reference(Some(3), 1),        // 5: newest
        // New handles in pre-order: 6 = 0, 7 = 3, 8 = 5, 9 = 2, 10 = 4, 11 = 1.
        Op::Transfer(0, None),
        Op::Unlink(Some(6), 11), // 11 should go to 7 (the old 3)
    ]);
}

/// The bytes a carved object of `size` bytes at `off` takes: whole 16-byte
/// granules, clipped at the region's end (as talloc-rs and C carve).
fn granule(off: usize, size: usize, region_size: usize) -> usize {
    size.next_multiple_of(16).min(region_size - off)
}
