//! Intrusive doubly linked lists over arena indices.
//!
//! The nodes live in a caller-owned `[Link]` indexed like the arena of the queued objects, so
//! queueing never allocates. A thread has exactly one link because it is in at most one queue at
//! a time (a run queue, a quota group's parking list or one wait queue). Each link also records
//! the key it was queued with (priority level or rank), so removal needs nothing but the links.

use crate::arena::NIL;

/// The queue node of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    prev: u32,
    next: u32,
    /// The ordering key the node was queued with.
    pub(crate) key: u16,
}

impl Default for Link {
    fn default() -> Self {
        Self { prev: NIL, next: NIL, key: 0 }
    }
}

/// A list head: first and last node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct List {
    head: u32,
    tail: u32,
}

impl Default for List {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl List {
    /// The empty list.
    pub(crate) const EMPTY: Self = Self { head: NIL, tail: NIL };

    /// Whether the list has no node.
    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// The first node.
    pub(crate) fn first(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Appends `node` with `key`.
    #[inline]
    pub(crate) fn push_back(&mut self, links: &mut [Link], node: u32, key: u16) {
        links[node as usize] = Link { prev: self.tail, next: NIL, key };
        match self.tail {
            NIL => self.head = node,
            tail => links[tail as usize].next = node,
        }
        self.tail = node;
    }

    /// Prepends `node` with `key`.
    pub(crate) fn push_front(&mut self, links: &mut [Link], node: u32, key: u16) {
        links[node as usize] = Link { prev: NIL, next: self.head, key };
        match self.head {
            NIL => self.tail = node,
            head => links[head as usize].prev = node,
        }
        self.head = node;
    }

    /// Inserts `node` keeping keys in descending order, after the nodes with an equal key (FIFO
    /// among equals). Linear in the number of nodes with a key at least `key`.
    pub(crate) fn insert_by_key(&mut self, links: &mut [Link], node: u32, key: u16) {
        let mut after = NIL;
        let mut cursor = self.head;
        while cursor != NIL && links[cursor as usize].key >= key {
            after = cursor;
            cursor = links[cursor as usize].next;
        }
        if after == NIL {
            self.push_front(links, node, key);
        } else if cursor == NIL {
            self.push_back(links, node, key);
        } else {
            links[node as usize] = Link { prev: after, next: cursor, key };
            links[after as usize].next = node;
            links[cursor as usize].prev = node;
        }
    }

    /// Unlinks `node`, which must be in this list.
    pub(crate) fn remove(&mut self, links: &mut [Link], node: u32) {
        let Link { prev, next, .. } = links[node as usize];
        match prev {
            NIL => self.head = next,
            prev => links[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => links[next as usize].prev = prev,
        }
        links[node as usize].prev = NIL;
        links[node as usize].next = NIL;
    }

    /// Removes and returns the first node.
    pub(crate) fn pop_front(&mut self, links: &mut [Link]) -> Option<u32> {
        let first = self.first()?;
        self.remove(links, first);
        Some(first)
    }

    /// The nodes in order. The list must not be modified while iterating; to remove while
    /// walking, read [`List::next`] before removing.
    pub(crate) fn iter<'a>(&self, links: &'a [Link]) -> impl Iterator<Item = u32> + 'a {
        let mut cursor = self.head;
        core::iter::from_fn(move || {
            let node = (cursor != NIL).then_some(cursor)?;
            cursor = links[node as usize].next;
            Some(node)
        })
    }

    /// The node after `node`.
    pub(crate) fn next(links: &[Link], node: u32) -> Option<u32> {
        let next = links[node as usize].next;
        (next != NIL).then_some(next)
    }

    /// Checks the back links and end pointers (tests only).
    #[cfg(test)]
    pub(crate) fn is_consistent(&self, links: &[Link]) -> bool {
        let mut prev = NIL;
        let mut cursor = self.head;
        while cursor != NIL {
            if links[cursor as usize].prev != prev {
                return false;
            }
            prev = cursor;
            cursor = links[cursor as usize].next;
        }
        self.tail == prev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn keyed_insertion_is_descending_and_fifo_among_equals() {
        let mut links = [Link::default(); 6];
        let mut list = List::EMPTY;
        for (node, key) in [(0, 5), (1, 9), (2, 5), (3, 1), (4, 9), (5, 7)] {
            list.insert_by_key(&mut links, node, key);
        }
        assert_eq!(list.iter(&links).collect::<Vec<_>>(), [1, 4, 5, 0, 2, 3]);
        list.remove(&mut links, 5);
        list.remove(&mut links, 1);
        list.remove(&mut links, 3);
        assert_eq!(list.iter(&links).collect::<Vec<_>>(), [4, 0, 2]);
        assert!(list.is_consistent(&links));
        assert_eq!(list.pop_front(&mut links), Some(4));
        assert_eq!(List::next(&links, 0), Some(2));
    }

    #[test]
    fn push_front_and_back() {
        let mut links = [Link::default(); 3];
        let mut list = List::EMPTY;
        list.push_back(&mut links, 0, 0);
        list.push_front(&mut links, 1, 0);
        list.push_back(&mut links, 2, 0);
        assert_eq!(list.iter(&links).collect::<Vec<_>>(), [1, 0, 2]);
        for node in [0, 1, 2] {
            list.remove(&mut links, node);
        }
        assert!(list.is_empty());
        assert!(list.is_consistent(&links));
    }
}
