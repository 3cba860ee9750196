//! The five webhook operations, with Asana's `{"data": …}` envelope
//! unwrapped and errors turned into [`Error`].

use std::fmt;

use crate::client::Client;
use crate::error::{self, Error};
use crate::hook_secret::HookSecret;
use crate::types::{
    NextPageInner, WebhookFilter, WebhookListOptField, WebhookOptField, WebhookRequest,
    WebhookResponse,
};

/// A webhook as Asana describes it. Only `gid`, `resource_type`, `active`,
/// `resource` and `target` come by default; ask for the rest with
/// `opt_fields`. Unset timestamps are `None`.
pub type Webhook = WebhookResponse;

/// Where the next page starts: pass [`NextPage::offset`] back as `offset`.
pub type NextPage = NextPageInner;

/// The largest page Asana serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// One page of results together with the pointer to the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// `None` on the last page.
    pub next_page: Option<NextPage>,
}

impl<T> Page<T> {
    /// The offset token of the next page, `None` on the last page.
    pub fn next_offset(&self) -> Option<&str> {
        self.next_page.as_ref()?.offset.as_deref()
    }
}

/// A newly created webhook and the secret that signs its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// The `X-Hook-Secret` from the 201 answer. Store it: Asana never sends
    /// it again.
    pub secret: Option<HookSecret>,
}

/// The `opt_fields` and `opt_pretty` setters that every builder with both shares.
macro_rules! output_options {
    ($field:ty) => {
        /// Properties to include beyond the compact default.
        pub fn opt_fields(mut self, fields: impl IntoIterator<Item = $field>) -> Self {
            self.opt_fields.extend(fields);
            self
        }

        /// Asks Asana to indent its JSON (debugging only).
        pub fn opt_pretty(mut self, pretty: bool) -> Self {
            self.opt_pretty = Some(pretty);
            self
        }
    };
}

/// Copies a builder's `opt_fields` and `opt_pretty` onto the generated one.
macro_rules! apply_output_options {
    ($request:ident, $builder:ident) => {{
        let mut request = $request;
        if !$builder.opt_fields.is_empty() {
            request = request.opt_fields($builder.opt_fields);
        }
        if let Some(pretty) = $builder.opt_pretty {
            request = request.opt_pretty(pretty);
        }
        request
    }};
}

// The Events API's builder (events.rs) shares both.
pub(crate) use {apply_output_options, output_options};

fn missing_data(operation: &str) -> Error {
    Error::Decode {
        message: format!("the {operation} answer has no `data`"),
    }
}

/// Builder for [`Client::get_webhooks`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Clone)]
pub struct GetWebhooks<'a> {
    client: &'a Client,
    workspace: String,
    resource: Option<String>,
    limit: Option<u32>,
    offset: Option<String>,
    opt_fields: Vec<WebhookListOptField>,
    opt_pretty: Option<bool>,
}

impl fmt::Debug for GetWebhooks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetWebhooks")
            .field("workspace", &self.workspace)
            .field("resource", &self.resource)
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .field("opt_fields", &self.opt_fields)
            .finish_non_exhaustive()
    }
}

impl GetWebhooks<'_> {
    /// Only webhooks on this resource.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Page size, `1..=100`. Anything else is refused before a request is sent.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Starts at the page this offset token (from [`Page::next_offset`]) names.
    pub fn offset(mut self, offset: impl Into<String>) -> Self {
        self.offset = Some(offset.into());
        self
    }

    output_options!(WebhookListOptField);

    pub(crate) fn has_limit(&self) -> bool {
        self.limit.is_some()
    }

    /// Sends the request and returns one page.
    pub async fn send(self) -> Result<Page<Webhook>, Error> {
        let mut request = self.client.api.get_webhooks().workspace(self.workspace);
        if let Some(limit) = self.limit {
            if !(1..=MAX_PAGE_SIZE).contains(&limit) {
                return Err(Error::InvalidRequest(format!(
                    "page size {limit} is outside 1..={MAX_PAGE_SIZE}, the range Asana accepts"
                )));
            }
            request = request.limit(u64::from(limit));
        }
        if let Some(resource) = self.resource {
            request = request.resource(resource);
        }
        if let Some(offset) = self.offset {
            request = request.offset(offset);
        }
        let request = apply_output_options!(request, self);
        let body = error::generated(request.send()).await?.into_inner();
        Ok(Page {
            items: body.data,
            next_page: body.next_page.and_then(|p| p.0),
        })
    }
}

/// Builder for [`Client::create_webhook`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Clone, Debug)]
pub struct CreateWebhook<'a> {
    client: &'a Client,
    request: WebhookRequest,
    opt_fields: Vec<WebhookOptField>,
    opt_pretty: Option<bool>,
}

impl CreateWebhook<'_> {
    /// Adds one filter; an event is delivered when it passes any filter.
    /// Webhooks on teams, portfolios and workspaces require filters.
    pub fn filter(mut self, filter: WebhookFilter) -> Self {
        self.request.filters.push(filter);
        self
    }

    /// Adds several filters.
    pub fn filters(mut self, filters: impl IntoIterator<Item = WebhookFilter>) -> Self {
        self.request.filters.extend(filters);
        self
    }

    output_options!(WebhookOptField);

    /// Sends `POST /webhooks`. Asana POSTs the handshake to the target
    /// before it answers, so the target must be served concurrently; see
    /// the crate documentation.
    pub async fn send(self) -> Result<CreatedWebhook, Error> {
        let request = self
            .client
            .api
            .create_webhook()
            .body_map(|b| b.data(Some(self.request)));
        let request = apply_output_options!(request, self);
        let response = error::generated(request.send()).await?;
        let header_secret = response
            .headers()
            .get("x-hook-secret")
            .and_then(|v| v.to_str().ok())
            .map(HookSecret::new);
        let body = response.into_inner();
        let webhook = body.data.ok_or_else(|| missing_data("createWebhook"))?;
        let secret = body.x_hook_secret.map(HookSecret::new).or(header_secret);
        Ok(CreatedWebhook { webhook, secret })
    }
}

/// A createWebhook request without its client: what the create through the
/// handshake hands to the task that outlives its caller.
#[cfg(feature = "receiver")]
#[derive(Clone, Debug)]
pub(crate) struct CreateRequest {
    request: WebhookRequest,
    opt_fields: Vec<WebhookOptField>,
    opt_pretty: Option<bool>,
}

#[cfg(feature = "receiver")]
impl<'a> CreateWebhook<'a> {
    /// Splits the builder into its client and its request.
    pub(crate) fn detach(self) -> (&'a Client, CreateRequest) {
        let request = CreateRequest {
            request: self.request,
            opt_fields: self.opt_fields,
            opt_pretty: self.opt_pretty,
        };
        (self.client, request)
    }
}

#[cfg(feature = "receiver")]
impl CreateRequest {
    /// The resource to watch.
    pub(crate) fn resource(&self) -> &str {
        &self.request.resource
    }

    /// Where deliveries go.
    pub(crate) fn target(&self) -> &str {
        &self.request.target
    }

    /// The filters it asks for.
    pub(crate) fn filters(&self) -> &[WebhookFilter] {
        &self.request.filters
    }

    /// The builder again, on `client`.
    pub(crate) fn attach(self, client: &Client) -> CreateWebhook<'_> {
        CreateWebhook {
            client,
            request: self.request,
            opt_fields: self.opt_fields,
            opt_pretty: self.opt_pretty,
        }
    }
}

/// Builder for [`Client::get_webhook`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Clone, Debug)]
pub struct GetWebhook<'a> {
    client: &'a Client,
    gid: String,
    opt_fields: Vec<WebhookOptField>,
    opt_pretty: Option<bool>,
}

impl GetWebhook<'_> {
    output_options!(WebhookOptField);

    /// Sends `GET /webhooks/{gid}`.
    pub async fn send(self) -> Result<Webhook, Error> {
        let request = self.client.api.get_webhook().webhook_gid(self.gid);
        let request = apply_output_options!(request, self);
        error::generated(request.send())
            .await?
            .into_inner()
            .data
            .ok_or_else(|| missing_data("getWebhook"))
    }
}

/// Builder for [`Client::update_webhook`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Clone, Debug)]
pub struct UpdateWebhook<'a> {
    client: &'a Client,
    gid: String,
    filters: Option<Vec<WebhookFilter>>,
    opt_fields: Vec<WebhookOptField>,
    opt_pretty: Option<bool>,
}

impl UpdateWebhook<'_> {
    /// Replaces the webhook's filters with these (Asana overwrites the whole
    /// array). An empty list clears them, like [`UpdateWebhook::clear_filters`].
    pub fn filters(mut self, filters: impl IntoIterator<Item = WebhookFilter>) -> Self {
        self.filters = Some(filters.into_iter().collect());
        self
    }

    /// Removes every filter: sends `"filters": []`.
    pub fn clear_filters(mut self) -> Self {
        self.filters = Some(Vec::new());
        self
    }

    output_options!(WebhookOptField);

    /// Sends `PUT /webhooks/{gid}`. Without [`UpdateWebhook::filters`] or
    /// [`UpdateWebhook::clear_filters`] the `filters` key is left out.
    pub async fn send(self) -> Result<Webhook, Error> {
        let filters = self.filters;
        let request = self
            .client
            .api
            .update_webhook()
            .webhook_gid(self.gid)
            .body_map(|b| b.data(Some(crate::types::WebhookUpdateRequest { filters })));
        let request = apply_output_options!(request, self);
        error::generated(request.send())
            .await?
            .into_inner()
            .data
            .ok_or_else(|| missing_data("updateWebhook"))
    }
}

/// Builder for [`Client::delete_webhook`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Clone, Debug)]
pub struct DeleteWebhook<'a> {
    client: &'a Client,
    gid: String,
    opt_pretty: Option<bool>,
}

impl DeleteWebhook<'_> {
    /// Asks Asana to indent its JSON (debugging only).
    pub fn opt_pretty(mut self, pretty: bool) -> Self {
        self.opt_pretty = Some(pretty);
        self
    }

    /// Sends `DELETE /webhooks/{gid}`.
    pub async fn send(self) -> Result<(), Error> {
        let mut request = self.client.api.delete_webhook().webhook_gid(self.gid);
        if let Some(pretty) = self.opt_pretty {
            request = request.opt_pretty(pretty);
        }
        error::generated(request.send()).await.map(drop)
    }
}

impl Client {
    /// `GET /webhooks`: one page of the webhooks this app registered for the
    /// token's user in `workspace`.
    pub fn get_webhooks(&self, workspace: impl Into<String>) -> GetWebhooks<'_> {
        GetWebhooks {
            client: self,
            workspace: workspace.into(),
            resource: None,
            limit: None,
            offset: None,
            opt_fields: Vec::new(),
            opt_pretty: None,
        }
    }

    /// `POST /webhooks`: subscribes `target` to events on `resource`.
    ///
    /// This plain call leaves the handshake to whatever serves `target`.
    pub fn create_webhook(
        &self,
        resource: impl Into<String>,
        target: impl Into<String>,
    ) -> CreateWebhook<'_> {
        CreateWebhook {
            client: self,
            request: WebhookRequest {
                resource: resource.into(),
                target: target.into(),
                filters: Vec::new(),
            },
            opt_fields: Vec::new(),
            opt_pretty: None,
        }
    }

    /// `GET /webhooks/{gid}`: one webhook.
    pub fn get_webhook(&self, gid: impl Into<String>) -> GetWebhook<'_> {
        GetWebhook {
            client: self,
            gid: gid.into(),
            opt_fields: Vec::new(),
            opt_pretty: None,
        }
    }

    /// `PUT /webhooks/{gid}`: replaces a webhook's filters.
    pub fn update_webhook(&self, gid: impl Into<String>) -> UpdateWebhook<'_> {
        UpdateWebhook {
            client: self,
            gid: gid.into(),
            filters: None,
            opt_fields: Vec::new(),
            opt_pretty: None,
        }
    }

    /// `DELETE /webhooks/{gid}`: removes a webhook for good.
    pub fn delete_webhook(&self, gid: impl Into<String>) -> DeleteWebhook<'_> {
        DeleteWebhook {
            client: self,
            gid: gid.into(),
            opt_pretty: None,
        }
    }
}
