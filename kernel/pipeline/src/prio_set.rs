//! A set of INTIDs ordered by (priority level, INTID): bitmaps per priority level plus two
//! summary levels, so insert, remove, first and next are O(1) (a handful of word operations,
//! `trailing_zeros` and no loops over entries).

use crate::intid::{IntId, NR_INTIDS};

/// Words of a bitmap over all INTIDs.
pub(crate) const WORDS: usize = NR_INTIDS.div_ceil(64);

/// A position in the priority order: priority level first, then INTID.
pub(crate) type Key = (u8, IntId);

/// Set of INTIDs, each filed under a priority level in `0..LEVELS`.
///
/// Memory: `LEVELS * 130 + 1180` bytes or so (4.3 KiB for 32 levels, 34 KiB for 256).
#[derive(Clone)]
pub(crate) struct PrioSet<const LEVELS: usize> {
    /// Bit `l` set: level `l` has at least one member.
    levels: [u64; 4],
    /// Per level, bit `w` set: `bits[l][w] != 0`.
    words: [u16; LEVELS],
    /// Per level, one bit per INTID.
    bits: [[u64; WORDS]; LEVELS],
    /// One bit per INTID: member of the set (any level).
    members: [u64; WORDS],
    /// Level each member is filed under.
    level_of: [u8; NR_INTIDS],
    len: u16,
}

const fn split(id: IntId) -> (usize, u64) {
    (id.index() / 64, 1u64 << (id.index() % 64))
}

/// Builds the INTID from a word index and a bit index found by `trailing_zeros`. Bitmaps only
/// ever hold bits of valid INTIDs, so the clamp never changes anything.
const fn join(word: usize, bit: u32) -> IntId {
    IntId::clamped(word * 64 + bit as usize)
}

impl<const LEVELS: usize> PrioSet<LEVELS> {
    const VALID: () = assert!(
        LEVELS.is_power_of_two() && LEVELS <= 256,
        "LEVELS must be a power of two <= 256"
    );
    /// Right shift from an 8-bit GIC priority to a level.
    const SHIFT: u32 = 8 - LEVELS.trailing_zeros();

    /// An empty set.
    pub(crate) const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Self {
            levels: [0; 4],
            words: [0; LEVELS],
            bits: [[0; WORDS]; LEVELS],
            members: [0; WORDS],
            level_of: [0; NR_INTIDS],
            len: 0,
        }
    }

    /// The level a GIC priority is filed under: its top `log2(LEVELS)` bits.
    pub(crate) const fn level_of_priority(priority: u8) -> u8 {
        ((priority as u32) >> Self::SHIFT) as u8
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub(crate) fn contains(&self, id: IntId) -> bool {
        let (w, m) = split(id);
        self.members[w] & m != 0
    }

    /// Adds `id` under the level of `priority`; false (and no change) if already a member.
    pub(crate) fn insert(&mut self, id: IntId, priority: u8) -> bool {
        if self.contains(id) {
            return false;
        }
        let level = Self::level_of_priority(priority);
        let l = usize::from(level);
        let (w, m) = split(id);
        self.members[w] |= m;
        self.level_of[id.index()] = level;
        self.bits[l][w] |= m;
        self.words[l] |= 1 << w;
        self.levels[l / 64] |= 1 << (l % 64);
        self.len += 1;
        true
    }

    /// Removes `id`; false if it was not a member.
    pub(crate) fn remove(&mut self, id: IntId) -> bool {
        if !self.contains(id) {
            return false;
        }
        let l = usize::from(self.level_of[id.index()]);
        let (w, m) = split(id);
        self.members[w] &= !m;
        self.bits[l][w] &= !m;
        if self.bits[l][w] == 0 {
            self.words[l] &= !(1 << w);
            if self.words[l] == 0 {
                self.levels[l / 64] &= !(1 << (l % 64));
            }
        }
        self.len -= 1;
        true
    }

    /// Empties the set.
    pub(crate) fn clear(&mut self) {
        *self = Self::new();
    }

    /// First member of level `l` at or after INTID word `from_word`, bit `from_bit`.
    fn first_in_level(&self, l: usize, from_word: usize, from_bit: u32) -> Option<IntId> {
        if from_word >= WORDS {
            return None;
        }
        let here = self.bits[l][from_word] & (u64::MAX.checked_shl(from_bit).unwrap_or(0));
        if here != 0 {
            return Some(join(from_word, here.trailing_zeros()));
        }
        let later =
            u32::from(self.words[l]) & (u32::MAX.checked_shl(from_word as u32 + 1).unwrap_or(0));
        if later == 0 {
            return None;
        }
        let w = later.trailing_zeros() as usize;
        Some(join(w, self.bits[l][w].trailing_zeros()))
    }

    /// First non-empty level at or after `from`.
    fn first_level(&self, from: usize) -> Option<usize> {
        let mut i = from / 64;
        let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
        while i < self.levels.len() {
            let bits = self.levels[i] & mask;
            if bits != 0 {
                return Some(i * 64 + bits.trailing_zeros() as usize);
            }
            i += 1;
            mask = u64::MAX;
        }
        None
    }

    /// The smallest key: highest priority, then lowest INTID.
    pub(crate) fn first(&self) -> Option<Key> {
        let l = self.first_level(0)?;
        let id = self.first_in_level(l, 0, 0)?;
        Some((l as u8, id))
    }

    /// The smallest key strictly after `key` (which need not be a member).
    pub(crate) fn next_after(&self, key: Key) -> Option<Key> {
        let (level, id) = key;
        let l = usize::from(level);
        let next = id.index() + 1;
        if l < LEVELS
            && let Some(found) = self.first_in_level(l, next / 64, (next % 64) as u32)
        {
            return Some((level, found));
        }
        let l = self.first_level(l + 1)?;
        let found = self.first_in_level(l, 0, 0)?;
        Some((l as u8, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: u32) -> IntId {
        IntId::new(raw).unwrap()
    }

    #[test]
    fn order_and_membership() {
        let mut s = PrioSet::<256>::new();
        assert!(s.first().is_none());
        assert!(s.insert(id(1019), 0x10));
        assert!(s.insert(id(5), 0x80));
        assert!(s.insert(id(64), 0x10));
        assert!(s.insert(id(63), 0x10));
        assert!(!s.insert(id(63), 0x00));
        assert_eq!(s.len(), 4);
        let mut keys = vec![];
        let mut k = s.first();
        while let Some(key) = k {
            keys.push((key.0, key.1.raw()));
            k = s.next_after(key);
        }
        assert_eq!(keys, [(0x10, 63), (0x10, 64), (0x10, 1019), (0x80, 5)]);
        assert!(s.remove(id(64)));
        assert!(!s.remove(id(64)));
        assert_eq!(s.next_after((0x10, id(63))), Some((0x10, id(1019))));
        assert_eq!(s.next_after((0x10, id(64))), Some((0x10, id(1019))));
        assert_eq!(s.next_after((0x10, id(1019))), Some((0x80, id(5))));
        assert_eq!(s.next_after((0xff, id(1019))), None);
        s.clear();
        assert_eq!(s.len(), 0);
        assert!(s.first().is_none());
    }

    #[test]
    fn quantized_levels() {
        let mut s = PrioSet::<32>::new();
        assert_eq!(PrioSet::<32>::level_of_priority(0xff), 31);
        assert_eq!(PrioSet::<1>::level_of_priority(0xff), 0);
        s.insert(id(9), 0x47);
        s.insert(id(8), 0x40);
        s.insert(id(7), 0x48);
        assert_eq!(s.first(), Some((8, id(8))));
        assert_eq!(s.next_after((8, id(8))), Some((8, id(9))));
        assert_eq!(s.next_after((8, id(9))), Some((9, id(7))));
    }
}
