//! `conflux check`'s warnings about the shape of the mappings
//! (docs/PLAN.md), which never change its exit code: a field that calls a
//! service once per item of a list above it without `batch` (an N+1
//! pattern), and a mapping no query can reach. Read from the bindings and
//! the types their fields return, from the root types down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::binding::{Bindings, BoundSource};
use super::sdl::SchemaModel;
use crate::config::Diagnostic;
use crate::connector::coerce::{OutputKind, OutputType};
use crate::execute::planned::uses_parent;

/// The warnings, each `warning: …` at its mapping in `services.toml`, in
/// file order.
pub fn warnings(sdl: &SchemaModel, bindings: &Bindings) -> Vec<Diagnostic> {
    // Object type → the list fields (`Type.field`) its objects come from.
    let mut lists_into: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut reachable: BTreeSet<&str> = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::new();
    for root in std::iter::once(sdl.query_type.as_str()).chain(sdl.mutation_type.as_deref()) {
        if reachable.insert(root) {
            queue.push_back(root);
        }
    }
    // Fields by type, so the walk visits each type's fields once.
    let mut fields_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for key in bindings.keys() {
        if let Some((type_name, _)) = key.split_once('.') {
            fields_of.entry(type_name).or_default().push(key);
        }
    }
    while let Some(type_name) = queue.pop_front() {
        for key in fields_of.get(type_name).into_iter().flatten() {
            let output = &bindings[*key].output;
            let is_list = matches!(output.kind, OutputKind::List(_));
            for target in object_types(output) {
                if is_list {
                    lists_into.entry(target).or_default().insert(key);
                }
                if reachable.insert(target) {
                    queue.push_back(target);
                }
            }
        }
    }
    let mut warnings = Vec::new();
    for (key, binding) in bindings {
        let Some(location) = &binding.location else {
            continue;
        };
        let type_name = key.split_once('.').map_or(key.as_str(), |(t, _)| t);
        if !reachable.contains(type_name) {
            warnings.push(Diagnostic::at(
                location.clone(),
                format!(
                    "warning: `{key}` is mapped, but no query reaches type `{type_name}` \
                     (no field of a root type leads to it)"
                ),
            ));
            continue;
        }
        let calls: Vec<_> = match &binding.source {
            BoundSource::Call(call) => vec![call],
            BoundSource::Merge(calls) => calls.iter().collect(),
            _ => continue,
        };
        let per_parent = calls.iter().find(|c| uses_parent(&c.spec));
        let (Some(call), Some(lists)) = (per_parent, lists_into.get(type_name)) else {
            continue;
        };
        let lists: Vec<String> = lists.iter().map(|l| format!("`{l}`")).collect();
        warnings.push(Diagnostic::at(
            location.clone(),
            format!(
                "warning: `{key}` calls service `{}` once per item of the list {} \
                 (N+1 calls); give it a `batch` to fetch every item's value in one call",
                call.service.name,
                lists.join(", ")
            ),
        ));
    }
    warnings.sort_by(|a, b| {
        let place = |d: &Diagnostic| d.location.as_ref().map(|l| (l.file.clone(), l.line, l.col));
        place(a).cmp(&place(b))
    });
    warnings
}

/// The object types a field of this type yields: its own, or an
/// interface's or union's possible types, under any lists.
fn object_types(output: &OutputType) -> Vec<&str> {
    match &output.kind {
        OutputKind::List(inner) => object_types(inner),
        OutputKind::Object(name) => vec![&**name],
        OutputKind::Abstract(abstract_type) => {
            abstract_type.possible.iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    }
}
