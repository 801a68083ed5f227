//! `DefaultSettings` inheritance (spec §4.7) as usrsvc 1.5.13 performs it on configobj
//! sections: `Table` mirrors a configobj `Section` (scalars and subsections in two ordered
//! lists, so the original's key order shows through in "Unknown config options"), `merge` is
//! the original's deep copy + one-level `Env`/`Monitoring` merge (and `Limits`, new in 2.0) +
//! `update`. Every key keeps
//! its `Origin` (file, raw section, line, inherited-from), so interpolation and error messages
//! point at the file it was written in.
//!
//! This version's synonyms (`max_restarts`, `[[Monitor]]`) are folded here, before the merge,
//! so a program's spelling overrides either spelling in its defaults.

use super::build::SourceFile;
use super::hashing::NameMap;

/// Up to this many keys a table is scanned rather than indexed.
const SMALL: usize = 12;
use super::syntax::RawValue;

/// Synonyms this version accepts (the original README documented them): spelled → canonical.
pub(super) fn canonical(key: &str) -> &str {
    match key {
        "max_restarts" => "maxrestarts",
        "Monitor" => "Monitoring",
        other => other,
    }
}

/// Where a key came from: the file, the raw section holding it (for interpolation), its line,
/// and the DefaultSettings it was inherited from, if any.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub file: usize,
    pub section: usize,
    pub line: usize,
    pub inherited: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) enum Item<'a> {
    Value {
        key: &'a str,
        raw: &'a RawValue,
        origin: Origin,
    },
    Section {
        key: &'a str,
        table: Table<'a>,
        origin: Origin,
    },
}

impl<'a> Item<'a> {
    pub(super) fn origin(&self) -> &Origin {
        match self {
            Item::Value { origin, .. } | Item::Section { origin, .. } => origin,
        }
    }
    pub(super) fn key(&self) -> &'a str {
        match self {
            Item::Value { key, .. } | Item::Section { key, .. } => key,
        }
    }
}

/// A configobj `Section` as the original's merge sees it: scalars and subsections in two
/// ordered lists (its `keys()` is scalars then sections), keys unique across both.
#[derive(Debug, Clone, Default)]
pub(super) struct Table<'a> {
    scalars: Vec<(String, Item<'a>)>,
    sections: Vec<(String, Item<'a>)>,
    /// Where each key is, once there are more than `SMALL` (see `find`): keeps a section with
    /// very many keys (a long `[[Env]]`) from costing the square of its size.
    index: NameMap<(bool, usize)>,
    /// Second spellings of a synonym already present (`max_restarts` beside `maxrestarts`).
    pub conflicts: Vec<(String, Item<'a>)>,
}

impl<'a> Table<'a> {
    pub(super) fn from_section(
        files: &'a [SourceFile],
        file: usize,
        section: usize,
        synonyms: bool,
        inherited: Option<&str>,
    ) -> Table<'a> {
        let mut table = Table::default();
        let Some(tree) = files.get(file).map(|f| &f.tree) else {
            return table;
        };
        let Some(sec) = tree.section(section) else {
            return table;
        };
        table.index.reserve(sec.entries.len() + sec.children.len());
        table.scalars.reserve(sec.entries.len());
        let origin = |line| Origin {
            file,
            section,
            line,
            inherited: inherited.map(str::to_string),
        };
        let canon = |k: &str| -> String {
            if synonyms {
                canonical(k).to_string()
            } else {
                k.to_string()
            }
        };
        for e in &sec.entries {
            let item = Item::Value {
                key: &e.key,
                raw: &e.value,
                origin: origin(e.line),
            };
            table.insert_new(canon(&e.key), item);
        }
        for &c in &sec.children {
            let Some(child) = tree.section(c) else {
                continue;
            };
            let item = Item::Section {
                key: &child.name,
                table: Table::from_section(files, file, c, false, inherited),
                origin: Origin {
                    file,
                    section: c,
                    line: child.line,
                    inherited: inherited.map(str::to_string),
                },
            };
            table.insert_new(canon(&child.name), item);
        }
        table
    }

    fn insert_new(&mut self, key: String, item: Item<'a>) {
        if self.get(&key).is_some() {
            self.conflicts.push((key, item));
        } else {
            self.set(key, item);
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&Item<'a>> {
        let (in_sections, i) = self.find(key)?;
        let list = if in_sections {
            &self.sections
        } else {
            &self.scalars
        };
        list.get(i).map(|(_, v)| v)
    }

    /// configobj's `__setitem__`: an existing key keeps its place, a new one is appended to the
    /// list for its kind.
    /// Where `key` is: in `sections` (true) or `scalars`, at that index. Small tables are
    /// scanned; larger ones have an index.
    fn find(&self, key: &str) -> Option<(bool, usize)> {
        if self.scalars.len() + self.sections.len() > SMALL {
            return self.index.get(key).copied();
        }
        if let Some(i) = self.scalars.iter().position(|(k, _)| k == key) {
            return Some((false, i));
        }
        self.sections
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| (true, i))
    }

    /// Keeps the index whole once the table has grown past `SMALL`.
    fn reindex(&mut self) {
        let count = self.scalars.len() + self.sections.len();
        if count <= SMALL {
            self.index.clear();
            return;
        }
        if self.index.len() != count {
            self.index.clear();
            for (i, (k, _)) in self.scalars.iter().enumerate() {
                self.index.insert(k.clone(), (false, i));
            }
            for (i, (k, _)) in self.sections.iter().enumerate() {
                self.index.insert(k.clone(), (true, i));
            }
        }
    }

    fn set(&mut self, key: String, item: Item<'a>) {
        if let Some((in_sections, i)) = self.find(&key) {
            let list = if in_sections {
                &mut self.sections
            } else {
                &mut self.scalars
            };
            if let Some(slot) = list.get_mut(i) {
                slot.1 = item;
            }
        } else {
            let in_sections = matches!(item, Item::Section { .. });
            let list = if in_sections {
                &mut self.sections
            } else {
                &mut self.scalars
            };
            let at = list.len();
            list.push((key.clone(), item));
            if self.scalars.len() + self.sections.len() > SMALL {
                self.index.insert(key, (in_sections, at));
                self.reindex();
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if self.find(key).is_none() {
            return;
        }
        self.scalars.retain(|(k, _)| k != key);
        self.sections.retain(|(k, _)| k != key);
        self.index.clear();
        self.reindex();
    }

    /// configobj's `update`: every key of `other`, in its order, set into `self`.
    fn update(&mut self, other: &Table<'a>) {
        for (k, v) in other.iter() {
            self.set(k.clone(), v.clone());
        }
        self.conflicts.extend(other.conflicts.iter().cloned());
    }

    /// configobj's `keys()` order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &(String, Item<'a>)> {
        self.scalars.iter().chain(self.sections.iter())
    }
}

/// The original's merge of a DefaultSettings section under a program (spec §4.7): a copy of
/// the defaults, `Env`, `Monitoring` and `Limits` merged one level deep when both have them,
/// then every program key set over it.
pub(super) fn merge<'a>(defaults: &Table<'a>, program: &Table<'a>) -> Table<'a> {
    let mut merged = defaults.clone();
    let mut program = program.clone();
    for sub in ["Env", "Monitoring", "Limits"] {
        let (
            Some(Item::Section { table: dt, .. }),
            Some(Item::Section {
                key,
                table: pt,
                origin,
            }),
        ) = (merged.get(sub), program.get(sub))
        else {
            continue;
        };
        let mut both = dt.clone();
        both.update(pt);
        let item = Item::Section {
            key,
            table: both,
            origin: origin.clone(),
        };
        program.set(sub.to_string(), item);
        merged.remove(sub);
    }
    merged.update(&program);
    merged
}
