//! Emitting an event: the compact event body that deliveries carry, the
//! named one the Events API returns, which webhooks receive it (those on
//! the event's resource or one of its ancestors whose filters pass it) and
//! which event streams record it (the event's resource and its ancestors
//! that the Events API can follow). Pure; the state queues and records.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::model::{EmittedEvent, Filter, Resource, Resources, timestamp};
use super::seed;

/// An event resolved against the seeded resources.
pub(crate) struct Emission<'a> {
    /// The event as deliveries carry it.
    pub(crate) body: Value,
    /// The event as the Events API returns it: `body` with names on the
    /// user, resource and parent, and the deprecated `type`. `created_at`,
    /// `action` and `change` are the same values as in `body`.
    pub(crate) named: Value,
    /// The resources whose event streams record it: those of `scope`
    /// that the Events API can follow.
    pub(crate) followers: Vec<&'a str>,
    event: &'a EmittedEvent,
    resource: &'a Resource,
    /// The event's resource, then its ancestors up to the top.
    scope: Vec<&'a str>,
}

impl<'a> Emission<'a> {
    /// Resolves `event` happening at `now`; its resource (and parent, if
    /// any) must be seeded.
    pub(crate) fn new(
        resources: &'a Resources,
        event: &'a EmittedEvent,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let resource = resources
            .get(event.resource.as_str())
            .ok_or_else(|| format!("unknown resource {}", event.resource))?;
        let parent = match &event.parent {
            Some(gid) => Some((
                gid,
                resources
                    .get(gid.as_str())
                    .ok_or_else(|| format!("unknown parent {gid}"))?,
            )),
            None => None,
        };
        let mut body = json!({
            "user": {"gid": seed::USER, "resource_type": "user"},
            "created_at": timestamp(&now),
            "action": event.action,
            "resource": {"gid": event.resource, "resource_type": resource.resource_type},
            "parent": parent.map(|(gid, p)| json!({"gid": gid, "resource_type": p.resource_type})),
        });
        if let Some(subtype) = resource.resource_subtype {
            body["resource"]["resource_subtype"] = json!(subtype);
        }
        if let Some(field) = &event.field {
            // Webhook events carry `new_value` only when it is a resource,
            // as a compact {gid, resource_type}; of the sandbox's objects
            // that is the user, for the assignee field.
            body["change"] = json!({"field": field, "action": "changed"});
            if field == "assignee" {
                body["change"]["new_value"] = json!({"gid": seed::USER, "resource_type": "user"});
            }
        }
        let mut scope = vec![event.resource.as_str()];
        let mut next = resource.parent;
        while let Some(gid) = next {
            scope.push(gid);
            next = resources.get(gid).and_then(|r| r.parent);
        }
        let followers = scope
            .iter()
            .copied()
            .filter(|gid| resources.get(gid).is_some_and(Resource::followable))
            .collect();
        let mut named = body.clone();
        named["user"]["name"] = json!(resources.get(seed::USER).map(|u| u.name));
        named["resource"]["name"] = json!(resource.name);
        if let Some((_, p)) = parent {
            named["parent"]["name"] = json!(p.name);
        }
        named["type"] = json!(resource.resource_type);
        Ok(Self {
            body,
            named,
            followers,
            event,
            resource,
            scope,
        })
    }

    /// Whether a webhook on `resource` with `filters` receives the event:
    /// it watches the event's resource or an ancestor, and has no filters
    /// or one that passes the event.
    pub(crate) fn reaches(&self, resource: &str, filters: &[Filter]) -> bool {
        self.scope.contains(&resource)
            && (filters.is_empty() || filters.iter().any(|f| self.passes(f)))
    }

    /// Every condition `filter` sets holds; `fields` only passes a
    /// `changed` event on one of them.
    fn passes(&self, f: &Filter) -> bool {
        let (resource, event) = (self.resource, self.event);
        f.resource_type
            .as_deref()
            .is_none_or(|t| t == resource.resource_type)
            && f.resource_subtype
                .as_deref()
                .is_none_or(|s| Some(s) == resource.resource_subtype)
            && f.action.as_deref().is_none_or(|a| a == event.action)
            && (f.fields.is_empty() || event.field.as_ref().is_some_and(|x| f.fields.contains(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::model::seeded_resources;

    fn event(
        resource: &str,
        action: &str,
        parent: Option<&str>,
        field: Option<&str>,
    ) -> EmittedEvent {
        EmittedEvent {
            resource: resource.into(),
            action: action.into(),
            parent: parent.map(Into::into),
            field: field.map(Into::into),
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_123).unwrap()
    }

    fn changed_fields(fields: &[&str]) -> Filter {
        Filter {
            resource_type: Some("task".into()),
            action: Some("changed".into()),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ..Filter::default()
        }
    }

    #[test]
    fn the_body_is_the_compact_event() {
        let resources = seeded_resources();
        let added = event(seed::TASK, "added", Some(seed::PROJECT), None);
        let emission = Emission::new(&resources, &added, at()).unwrap();
        assert_eq!(
            emission.body,
            json!({
                "user": {"gid": seed::USER, "resource_type": "user"},
                "created_at": "2023-11-14T22:13:20.123Z",
                "action": "added",
                "resource": {"gid": seed::TASK, "resource_type": "task", "resource_subtype": "default_task"},
                "parent": {"gid": seed::PROJECT, "resource_type": "project"},
            })
        );
        let assigned = event(seed::TASK, "changed", None, Some("assignee"));
        let body = Emission::new(&resources, &assigned, at()).unwrap().body;
        assert_eq!(body["parent"], Value::Null);
        assert_eq!(
            body["change"],
            json!({"field": "assignee", "action": "changed", "new_value": {"gid": seed::USER, "resource_type": "user"}})
        );
        let renamed = event(seed::PROJECT, "changed", None, Some("name"));
        let body = Emission::new(&resources, &renamed, at()).unwrap().body;
        assert_eq!(
            body["change"],
            json!({"field": "name", "action": "changed"})
        );
        assert_eq!(
            body["resource"],
            json!({"gid": seed::PROJECT, "resource_type": "project"})
        );
    }

    #[test]
    fn the_named_event_adds_names_and_type_and_keeps_the_rest() {
        let resources = seeded_resources();
        let added = event(seed::TASK, "added", Some(seed::PROJECT), None);
        let emission = Emission::new(&resources, &added, at()).unwrap();
        assert_eq!(
            emission.named,
            json!({
                "user": {"gid": seed::USER, "resource_type": "user", "name": "Sandbox User"},
                "created_at": "2023-11-14T22:13:20.123Z",
                "action": "added",
                "resource": {"gid": seed::TASK, "resource_type": "task", "resource_subtype": "default_task", "name": "Sandbox Task"},
                "parent": {"gid": seed::PROJECT, "resource_type": "project", "name": "Sandbox Project"},
                "type": "task",
            })
        );
        let assigned = event(seed::TASK, "changed", None, Some("assignee"));
        let emission = Emission::new(&resources, &assigned, at()).unwrap();
        assert_eq!(emission.named["parent"], Value::Null);
        for key in ["created_at", "action", "change"] {
            assert_eq!(emission.named[key], emission.body[key], "{key}");
        }
    }

    #[test]
    fn streams_of_the_resource_and_its_followable_ancestors_record_it() {
        let resources = seeded_resources();
        let follow = |resource: &str| {
            let e = event(resource, "changed", None, Some("name"));
            Emission::new(&resources, &e, at())
                .unwrap()
                .followers
                .iter()
                .map(|gid| gid.to_string())
                .collect::<Vec<_>>()
        };
        // Not the team nor the workspace: the Events API cannot follow them.
        assert_eq!(follow(seed::TASK), [seed::TASK, seed::PROJECT]);
        assert_eq!(follow(seed::PROJECT), [seed::PROJECT]);
        assert!(follow(seed::TEAM).is_empty());
        assert!(follow(seed::WORKSPACE).is_empty());
    }

    #[test]
    fn unknown_resources_are_refused() {
        let resources = seeded_resources();
        let unknown = event("42", "changed", None, None);
        assert_eq!(
            Emission::new(&resources, &unknown, at()).err(),
            Some("unknown resource 42".into())
        );
        let orphan = event(seed::TASK, "added", Some("43"), None);
        assert_eq!(
            Emission::new(&resources, &orphan, at()).err(),
            Some("unknown parent 43".into())
        );
    }

    #[test]
    fn events_reach_webhooks_on_the_resource_and_its_ancestors() {
        let resources = seeded_resources();
        let on_task = event(seed::TASK, "changed", None, Some("name"));
        let emission = Emission::new(&resources, &on_task, at()).unwrap();
        for watcher in [seed::TASK, seed::PROJECT, seed::TEAM, seed::WORKSPACE] {
            assert!(emission.reaches(watcher, &[]), "{watcher}");
        }
        assert!(!emission.reaches(seed::USER, &[]));
        // Not downwards: a project's event does not reach its task's webhooks.
        let on_project = event(seed::PROJECT, "changed", None, None);
        let emission = Emission::new(&resources, &on_project, at()).unwrap();
        assert!(emission.reaches(seed::WORKSPACE, &[]));
        assert!(!emission.reaches(seed::TASK, &[]));
    }

    #[test]
    fn filters_must_match_type_subtype_and_action() {
        let resources = seeded_resources();
        let on_task = event(seed::TASK, "added", Some(seed::PROJECT), None);
        let emission = Emission::new(&resources, &on_task, at()).unwrap();
        let filter = |rt: Option<&str>, st: Option<&str>, action: Option<&str>| Filter {
            resource_type: rt.map(Into::into),
            resource_subtype: st.map(Into::into),
            action: action.map(Into::into),
            fields: vec![],
        };
        let reaches = |f: Filter| emission.reaches(seed::PROJECT, &[f]);
        assert!(reaches(filter(Some("task"), None, Some("added"))));
        assert!(reaches(filter(None, Some("default_task"), None)));
        assert!(!reaches(filter(Some("project"), None, Some("added"))));
        assert!(!reaches(filter(Some("task"), Some("milestone"), None)));
        assert!(!reaches(filter(Some("task"), None, Some("removed"))));
        // Any one passing filter is enough.
        assert!(emission.reaches(
            seed::PROJECT,
            &[
                filter(Some("project"), None, None),
                filter(Some("task"), None, None)
            ]
        ));
        // The scope still applies with a passing filter.
        assert!(!emission.reaches(seed::USER, &[filter(Some("task"), None, None)]));
    }

    #[test]
    fn a_fields_filter_passes_only_its_changed_fields() {
        let resources = seeded_resources();
        let filters = [changed_fields(&["name", "due_on"])];
        let reaches = |action: &str, field: Option<&str>| {
            let e = event(seed::TASK, action, None, field);
            Emission::new(&resources, &e, at())
                .unwrap()
                .reaches(seed::PROJECT, &filters)
        };
        assert!(reaches("changed", Some("name")));
        assert!(reaches("changed", Some("due_on")));
        assert!(!reaches("changed", Some("notes")));
        assert!(!reaches("changed", None));
        assert!(!reaches("added", Some("name")));
    }
}
