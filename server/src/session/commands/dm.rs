//! `dm`: a private message, to anyone online (oneself included).

use chat_shared::validate::clean_text;
use uuid::Uuid;

use crate::path::producer::Said;
use crate::session::Session;
use crate::session::errors::Refusal;
use crate::wire::Wire;

impl<W: Wire> Session<W> {
    pub(super) fn dm(&mut self, to: &str, text: &str, id: Option<Uuid>) -> Result<(), Refusal> {
        let text = clean_text(text, self.config.live().max_text)?;
        let from = self.nick().clone();
        // Both copies, the recipient's and this sender's, come through sinks.
        let sender = (&from, self.logged_in);
        self.chat
            .dm(self.id, sender, &self.sink, to, Said::text(text, id))?;
        self.chat.ops.metrics.dm_messages.inc();
        Ok(())
    }
}
