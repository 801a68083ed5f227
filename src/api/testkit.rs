//! Test support for the API's unit tests: a config loaded from text, with the delegation
//! keys set in code (their parsing is the config's, tested there).

use std::path::Path;

use crate::config::{Config, Grant};

/// Programs `a` (allow restart, signal:QUIT), `b` (nothing), `c` (in group `g`, which allows
/// stop and health), `d` (in group `h`, which allows nothing); `alice` and group `ops` are
/// delegated. Files of the config live under `home`.
pub fn config(home: &Path) -> Config {
    let mut text = String::from("[Main]\n\n");
    for p in ["a", "b", "c", "d"] {
        text.push_str(&format!(
            "[Program:{p}]\ncommand = sleep 8837101\npidfile = {h}/{p}.pid\nstdout = {h}/{p}.out\n\n",
            h = home.display()
        ));
    }
    text.push_str("[Group:g]\nprograms = c\n\n[Group:h]\nprograms = d\n");
    let file = home.join("usrsvc.cfg");
    std::fs::write(&file, text).expect("write config");
    let mut config = crate::config::load(&file, home).expect("config loads");
    config.main.allow_users = vec!["alice".into()];
    config.main.allow_groups = vec!["ops".into()];
    let set = |c: &mut Config, name: &str, grants: Vec<Grant>| {
        if let Some(p) = c.programs.iter_mut().find(|p| p.name == name) {
            p.allow = grants.clone();
        }
        if let Some(g) = c.groups.iter_mut().find(|g| g.name == name) {
            g.allow = grants;
        }
    };
    set(&mut config, "a", vec![Grant::Restart, Grant::Signal(3)]);
    set(&mut config, "g", vec![Grant::Stop, Grant::Health]);
    config
}
