//! Constructors for webhook filters.

use crate::types::WebhookFilter;

// Every field is a string or a list of strings: equality is total.
impl Eq for WebhookFilter {}

impl WebhookFilter {
    /// Passes events of `action` (`changed`, `added`, `removed`, `deleted`,
    /// `undeleted`) on resources of `resource_type` (`task`, `project`, …).
    ///
    /// ```
    /// use asana_webhooks::types::WebhookFilter;
    /// let due_dates = WebhookFilter::new("task", "changed").with_fields(["due_at", "due_on"]);
    /// assert_eq!(due_dates.fields, ["due_at", "due_on"]);
    /// ```
    pub fn new(resource_type: impl Into<String>, action: impl Into<String>) -> Self {
        WebhookFilter {
            resource_type: Some(resource_type.into()),
            action: Some(action.into()),
            ..Default::default()
        }
    }

    /// Only resources of this subtype (for example `milestone`).
    pub fn with_subtype(mut self, subtype: impl Into<String>) -> Self {
        self.resource_subtype = Some(subtype.into());
        self
    }

    /// Only changes of these fields (valid with the `changed` action, and not
    /// on team, portfolio or workspace webhooks).
    pub fn with_fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }
}
