//! Walking every page of getWebhooks as a stream.

use futures::stream::{self, Stream, TryStreamExt};

use crate::error::Error;
use crate::operations::{GetWebhooks, MAX_PAGE_SIZE, Page, Webhook};

impl<'a> GetWebhooks<'a> {
    /// Every webhook, page after page, following `next_page.offset` until
    /// Asana says there is no next page. Pages are fetched as the stream is
    /// read, one page in memory at a time, with the page size set by
    /// [`GetWebhooks::limit`] (default 100, the maximum). The first error
    /// (an expired offset, say) is yielded and ends the stream.
    ///
    /// ```no_run
    /// use futures::TryStreamExt;
    /// # async fn run(client: asana_webhooks::Client) -> Result<(), asana_webhooks::Error> {
    /// let mut webhooks = std::pin::pin!(client.get_webhooks("1331").into_stream());
    /// while let Some(webhook) = webhooks.try_next().await? {
    ///     println!("{:?} -> {:?}", webhook.gid, webhook.target);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<Webhook, Error>> + Send + 'a {
        let first = if self.has_limit() {
            self
        } else {
            self.limit(MAX_PAGE_SIZE)
        };
        stream::try_unfold(Some(first), |next| async move {
            let Some(request) = next else {
                return Ok::<_, Error>(None);
            };
            let template = request.clone();
            let page: Page<Webhook> = request.send().await?;
            let following = page.next_offset().map(|offset| template.offset(offset));
            Ok(Some((
                stream::iter(page.items.into_iter().map(Ok)),
                following,
            )))
        })
        .try_flatten()
    }

    /// Every webhook in one `Vec`; see [`GetWebhooks::into_stream`].
    pub async fn collect_all(self) -> Result<Vec<Webhook>, Error> {
        self.into_stream().try_collect().await
    }
}
