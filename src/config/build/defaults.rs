//! The builder's `DefaultSettings:NAME` (spec §4.1.8, §4.7): finding them (pass 1) and
//! merging one into a program's keys. Knows nothing of the keys' meanings.

use std::collections::HashMap;

use super::super::error::ConfigError;
use super::super::inherit::{merge, Item, Table};
use super::super::interpolate::interpolate_value;
use super::super::syntax::{RawValue, ROOT};
use super::{interpolation_kind, Builder, DefaultsDef, Kind, Scope};

impl<'a> Builder<'a> {
    /// Pass 1 of the original: every `DefaultSettings:NAME` at the top of any file.
    pub(super) fn collect_defaults(&mut self) -> HashMap<String, DefaultsDef> {
        let mut found: HashMap<String, DefaultsDef> = HashMap::new();
        for (fi, file) in self.files.iter().enumerate() {
            let Some(root) = file.tree.section(ROOT) else {
                continue;
            };
            let scalars = root.entries.iter().map(|e| (e.key.as_str(), e.line, None));
            let sections = root.children.iter().filter_map(|&c| {
                file.tree
                    .section(c)
                    .map(|s| (s.name.as_str(), s.line, Some(c)))
            });
            for (key, line, section) in scalars.chain(sections) {
                let Some(name) = key.strip_prefix("DefaultSettings:") else {
                    continue;
                };
                if name.is_empty() {
                    self.errors.push(
                        ConfigError::new(
                            Kind::DefaultsWithoutName,
                            file.path.clone(),
                            format!(
                                "DefaultSettings section defined without a name in \"{}\"",
                                file.path.display()
                            ),
                        )
                        .at_line(line)
                        .in_section(key),
                    );
                    continue;
                }
                if let Some(first) = found.get(name) {
                    let message = format!(
                        "Multiple DefaultSettings object with name \"{name}\". Second encountered in \"{}\" (first defined at {}:{})",
                        file.path.display(),
                        self.path_of(first.file).display(),
                        first.line
                    );
                    self.errors.push(
                        ConfigError::new(Kind::DuplicateDefaults, file.path.clone(), message)
                            .at_line(line)
                            .in_section(key),
                    );
                    continue;
                }
                found.insert(
                    name.to_string(),
                    DefaultsDef {
                        file: fi,
                        line,
                        section,
                    },
                );
            }
        }
        found
    }

    /// The program's keys with its `defaults =` merged in, or `None` when that fails (then
    /// the program's own keys alone would only produce misleading errors).
    pub(super) fn apply_defaults(
        &mut self,
        name: &str,
        table: Table<'a>,
        scope: &Scope,
        defaults: &HashMap<String, DefaultsDef>,
    ) -> Option<Table<'a>> {
        let Some(item) = table.get("defaults") else {
            return Some(table);
        };
        let origin = item.origin().clone();
        let wanted = match item {
            Item::Section { .. } => {
                self.error(
                    Kind::SubsectionValue,
                    scope,
                    Some(&origin),
                    Some("defaults"),
                    "Invalid value for config parameter defaults: a subsection, where a value is expected".into(),
                );
                return None;
            }
            Item::Value { key, raw, .. } => {
                let tree = &self.files.get(origin.file)?.tree;
                match interpolate_value(tree, origin.section, key, raw) {
                    Ok(RawValue::Scalar(s)) => s,
                    Ok(RawValue::List(_)) => {
                        self.error(
                            Kind::ListValue,
                            scope,
                            Some(&origin),
                            Some("defaults"),
                            "Invalid value for config parameter defaults: a list (unquoted comma); quote the value".into(),
                        );
                        return None;
                    }
                    Err(e) => {
                        self.error(
                            interpolation_kind(&e),
                            scope,
                            Some(&origin),
                            Some("defaults"),
                            e.to_string(),
                        );
                        return None;
                    }
                }
            }
        };
        let Some(def) = defaults.get(&wanted) else {
            let file = self.path_of(origin.file);
            self.error(
                Kind::UnknownDefaults,
                scope,
                Some(&origin),
                Some("defaults"),
                format!(
                    "Program \"{name}\" in file \"{}\" uses a \"defaults\" of \"{wanted}\", but no such DefaultSettings section exists in read configuration files!",
                    file.display()
                ),
            );
            return None;
        };
        let Some(section) = def.section else {
            self.error(
                Kind::NotASection,
                scope,
                Some(&origin),
                Some("defaults"),
                format!(
                    "DefaultSettings:{wanted} must be a section, like [DefaultSettings:{wanted}]"
                ),
            );
            return None;
        };
        let base = Table::from_section(self.files, def.file, section, true, Some(&wanted));
        Some(merge(&base, &table))
    }
}
