//! A generational slot arena: stable `u32` indices for intrusive queues, plus a generation per
//! slot so a handle kept after its object was removed is detected instead of aliasing the next
//! occupant. Memory grows only on insertion; removal recycles the slot through a free list.

use alloc::vec::Vec;
use core::ops::{Index, IndexMut};

/// "No index": end of a free list or of an intrusive queue.
pub(crate) const NIL: u32 = u32::MAX;

/// A slot index together with the generation it was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

enum Slot<T> {
    Occupied { generation: u32, value: T },
    Free { generation: u32, next_free: u32 },
}

/// The arena. Indexing with a raw `u32` is for internal queues that only hold live indices;
/// it panics on a free slot, which would be a bug of this crate, never a caller mistake.
pub(crate) struct Arena<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
}

impl<T> Arena<T> {
    /// An empty arena.
    pub(crate) const fn new() -> Self {
        Self { slots: Vec::new(), free_head: NIL }
    }

    /// Stores `value`, reusing a free slot if there is one.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.slots[index as usize];
            let Slot::Free { generation, next_free } = *slot else {
                unreachable!("free list points at an occupied slot");
            };
            self.free_head = next_free;
            *slot = Slot::Occupied { generation, value };
            Key { index, generation }
        } else {
            let index = u32::try_from(self.slots.len()).expect("arena index space exhausted");
            self.slots.push(Slot::Occupied { generation: 0, value });
            Key { index, generation: 0 }
        }
    }

    /// The key the next [`Arena::insert`] will return.
    pub(crate) fn next_key(&self) -> Key {
        match self.slots.get(self.free_head as usize) {
            Some(Slot::Free { generation, .. }) => Key { index: self.free_head, generation: *generation },
            _ => Key { index: self.slots.len() as u32, generation: 0 },
        }
    }

    /// Removes and returns the value `key` refers to; `None` if the key is stale.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        self.get(key)?;
        let next_generation = key.generation.wrapping_add(1);
        let freed = Slot::Free { generation: next_generation, next_free: self.free_head };
        let Slot::Occupied { value, .. } = core::mem::replace(&mut self.slots[key.index as usize], freed) else {
            unreachable!("checked occupied above");
        };
        self.free_head = key.index;
        Some(value)
    }

    /// The value `key` refers to, unless the key is stale.
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slots.get(key.index as usize)? {
            Slot::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The value `key` refers to, mutably, unless the key is stale.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slots.get_mut(key.index as usize)? {
            Slot::Occupied { generation, value } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The current key of the occupied slot `index`.
    pub(crate) fn key(&self, index: u32) -> Key {
        match &self.slots[index as usize] {
            Slot::Occupied { generation, .. } => Key { index, generation: *generation },
            Slot::Free { .. } => panic!("key of a free arena slot"),
        }
    }

    /// Whether slot `index` is occupied (tests only).
    /// The key and the value of the occupied slot `index` in one lookup; panics if the slot is
    /// free, like indexing.
    #[inline]
    pub(crate) fn entry(&self, index: u32) -> (Key, &T) {
        match &self.slots[index as usize] {
            Slot::Occupied { generation, value } => (Key { index, generation: *generation }, value),
            Slot::Free { .. } => panic!("arena index {index} is free"),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_occupied(&self, index: u32) -> bool {
        matches!(self.slots.get(index as usize), Some(Slot::Occupied { .. }))
    }

    /// Number of slots ever allocated (occupied or free): the bound of valid indices.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// All occupied slots with their keys, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| match slot {
            Slot::Occupied { generation, value } => Some((Key { index: index as u32, generation: *generation }, value)),
            Slot::Free { .. } => None,
        })
    }

    /// All occupied slots, mutably.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|slot| match slot {
            Slot::Occupied { value, .. } => Some(value),
            Slot::Free { .. } => None,
        })
    }
}

impl<T> Index<u32> for Arena<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, index: u32) -> &T {
        match &self.slots[index as usize] {
            Slot::Occupied { value, .. } => value,
            Slot::Free { .. } => panic!("arena index {index} is free"),
        }
    }
}

impl<T> IndexMut<u32> for Arena<T> {
    #[inline(always)]
    fn index_mut(&mut self, index: u32) -> &mut T {
        match &mut self.slots[index as usize] {
            Slot::Occupied { value, .. } => value,
            Slot::Free { .. } => panic!("arena index {index} is free"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_are_refused_after_slot_reuse() {
        let mut arena = Arena::new();
        assert_eq!(arena.next_key(), Key { index: 0, generation: 0 });
        let a = arena.insert("a");
        assert_eq!(arena.remove(a), Some("a"));
        assert_eq!(arena.next_key(), Key { index: 0, generation: 1 });
        let b = arena.insert("b");
        assert_eq!(a.index, b.index, "the slot is recycled");
        assert_ne!(a, b);
        assert!(arena.get(a).is_none());
        assert_eq!(arena.remove(a), None);
        assert_eq!(arena.get(b), Some(&"b"));
        assert_eq!(arena.key(b.index), b);
        assert_eq!(arena.slot_count(), 1);
    }
}
