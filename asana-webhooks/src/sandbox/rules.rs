//! The rules Asana applies to webhook requests: what a create must name,
//! which filters a webhook may have, no two webhooks on the same resource
//! and target, and the bounds of a listing. Pure checks; the state calls
//! them before (or, for duplicates, while) changing anything.

use serde_json::Value;

use super::failure::Failure;
use super::model::{Filter, Resource, Resources, Webhook, parse_filters};

/// Filters that webhooks on workspaces, teams and portfolios may use.
const LARGE_SCOPE_WHITELIST: &[(&str, &[&str])] = &[
    (
        "project",
        &["added", "removed", "deleted", "undeleted", "changed"],
    ),
    ("team_membership", &["added", "removed"]),
    ("workspace_membership", &["added", "removed"]),
];

/// `fields` only with `changed`; on a workspace, team or portfolio, at
/// least one filter and each from [`LARGE_SCOPE_WHITELIST`].
pub(crate) fn check_filters(resource: &Resource, filters: &[Filter]) -> Result<(), Failure> {
    if filters
        .iter()
        .any(|f| !f.fields.is_empty() && f.action.as_deref() != Some("changed"))
    {
        return Err(Failure::new(
            400,
            "filters: `fields` is only valid with the `changed` action",
        ));
    }
    if !matches!(resource.resource_type, "workspace" | "team" | "portfolio") {
        return Ok(());
    }
    let allowed = |f: &Filter| {
        f.fields.is_empty()
            && LARGE_SCOPE_WHITELIST.iter().any(|(rt, actions)| {
                f.resource_type.as_deref() == Some(*rt)
                    && f.action.as_deref().is_some_and(|a| actions.contains(&a))
            })
    };
    if filters.is_empty() || !filters.iter().all(allowed) {
        return Err(Failure {
            status: 400,
            message: format!(
                "Webhooks on a {} need filters, each from the whitelist (project added/removed/deleted/undeleted/changed, team_membership or workspace_membership added/removed) and without fields",
                resource.resource_type
            ),
            error: Some("invalid_filters_for_larger_scoped_webhooks"),
        });
    }
    Ok(())
}

/// A create request that passed every check but the duplicate one.
#[derive(Debug, PartialEq)]
pub(crate) struct ValidCreate<'a> {
    pub(crate) resource: &'a str,
    pub(crate) target: &'a str,
    pub(crate) filters: Vec<Filter>,
}

/// Checks a create's `data` in Asana's order: resource and target
/// present, filters well formed, resource known, target a URL, filters
/// allowed on that resource.
pub(crate) fn check_create<'a>(
    resources: &Resources,
    data: &'a Value,
) -> Result<ValidCreate<'a>, Failure> {
    let Some(resource_gid) = data.get("resource").and_then(Value::as_str) else {
        return Err(Failure::new(400, "You should specify one of resource"));
    };
    let Some(target) = data.get("target").and_then(Value::as_str) else {
        return Err(Failure::new(400, "target: Missing input"));
    };
    let filters = parse_filters(data.get("filters"))?.unwrap_or_default();
    let Some(resource) = resources.get(resource_gid) else {
        return Err(Failure::new(
            404,
            format!("resource: Unknown object: {resource_gid}"),
        ));
    };
    match url::Url::parse(target) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => {
            return Err(Failure::new(
                400,
                format!("target: Not a valid URL: {target}"),
            ));
        }
    }
    check_filters(resource, &filters)?;
    Ok(ValidCreate {
        resource: resource_gid,
        target,
        filters,
    })
}

/// Asana's 403 when a webhook on `resource` to `target` already exists.
pub(crate) fn check_unique<'w>(
    mut webhooks: impl Iterator<Item = &'w Webhook>,
    resource: &str,
    target: &str,
) -> Result<(), Failure> {
    if webhooks.any(|w| w.resource == resource && w.target == target) {
        return Err(Failure {
            status: 403,
            message: "Duplicated webhook".into(),
            error: Some("duplicate_webhook"),
        });
    }
    Ok(())
}

/// A listing names a seeded workspace, and its `limit` (if any) is 1 to 100.
pub(crate) fn check_list(
    resources: &Resources,
    workspace: &str,
    limit: Option<u32>,
) -> Result<(), Failure> {
    if resources
        .get(workspace)
        .is_none_or(|r| r.resource_type != "workspace")
    {
        return Err(Failure::new(
            404,
            format!("workspace: Unknown object: {workspace}"),
        ));
    }
    if limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(Failure::new(400, "limit: Must be between 1 and 100"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sandbox::model::seeded_resources;
    use crate::sandbox::seed;

    fn filter(resource_type: &str, action: &str, fields: &[&str]) -> Filter {
        Filter {
            resource_type: Some(resource_type.into()),
            action: Some(action.into()),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ..Filter::default()
        }
    }

    #[test]
    fn fields_need_the_changed_action() {
        let resources = seeded_resources();
        let task = &resources[seed::TASK];
        let refused = check_filters(task, &[filter("task", "added", &["name"])]).unwrap_err();
        assert_eq!(
            (refused.status, refused.message.as_str(), refused.error),
            (
                400,
                "filters: `fields` is only valid with the `changed` action",
                None
            )
        );
        assert_eq!(
            check_filters(task, &[filter("task", "changed", &["name"])]),
            Ok(())
        );
        assert_eq!(check_filters(task, &[]), Ok(()));
    }

    #[test]
    fn large_scopes_take_only_whitelisted_filters() {
        let resources = seeded_resources();
        let team = &resources[seed::TEAM];
        assert_eq!(
            check_filters(team, &[filter("project", "undeleted", &[])]),
            Ok(())
        );
        for filters in [
            vec![],
            vec![filter("task", "changed", &[])],
            vec![filter("team_membership", "changed", &[])],
            vec![
                filter("project", "added", &[]),
                filter("task", "added", &[]),
            ],
        ] {
            let refused = check_filters(team, &filters).unwrap_err();
            assert_eq!(refused.status, 400);
            assert_eq!(
                refused.error,
                Some("invalid_filters_for_larger_scoped_webhooks")
            );
            assert!(
                refused
                    .message
                    .starts_with("Webhooks on a team need filters")
            );
        }
    }

    #[test]
    fn create_checks_come_in_asanas_order() {
        let resources = seeded_resources();
        let refused = |data: Value| {
            let f = check_create(&resources, &data).unwrap_err();
            (f.status, f.message)
        };
        assert_eq!(
            refused(json!({"target": 1})),
            (400, "You should specify one of resource".into())
        );
        assert_eq!(
            refused(json!({"resource": "1"})),
            (400, "target: Missing input".into())
        );
        assert_eq!(
            refused(json!({"resource": "1", "target": "x", "filters": 3})),
            (
                400,
                "filters: Invalid filters: expected an array of filters, not 3".into()
            )
        );
        assert_eq!(
            refused(json!({"resource": "1", "target": "x"})),
            (404, "resource: Unknown object: 1".into())
        );
        assert_eq!(
            refused(json!({"resource": seed::TASK, "target": "ftp://h/"})),
            (400, "target: Not a valid URL: ftp://h/".into())
        );
        let data = json!({"resource": seed::TASK, "target": "http://h/x"});
        assert_eq!(
            check_create(&resources, &data),
            Ok(ValidCreate {
                resource: seed::TASK,
                target: "http://h/x",
                filters: vec![],
            })
        );
    }

    #[test]
    fn listings_need_a_workspace_and_a_sane_limit() {
        let resources = seeded_resources();
        assert_eq!(check_list(&resources, seed::WORKSPACE, Some(100)), Ok(()));
        assert_eq!(check_list(&resources, seed::WORKSPACE, None), Ok(()));
        assert_eq!(
            check_list(&resources, seed::TEAM, Some(0)).unwrap_err(),
            Failure::new(404, format!("workspace: Unknown object: {}", seed::TEAM))
        );
        assert_eq!(
            check_list(&resources, seed::WORKSPACE, Some(101)).unwrap_err(),
            Failure::new(400, "limit: Must be between 1 and 100")
        );
    }
}
