//! The room registry: finding a room, creating or loading it, forgetting the idlest.

use std::sync::Arc;

use chat_shared::{RoomInfo, RoomName};
use tracing::warn;

use super::{Chat, ChatError, lock};
use crate::moderation::room::Settings;
use crate::path::Room;
use crate::store::RoomLoad;

impl Chat {
    /// The room called `name` (or the open room whose name it looks like), created if needed (with its stored tail and `seq`, read once,
    /// while the registry waits: a room is loaded once per run of the server). At the room
    /// limit, the least recently active empty room is forgotten to make space; with storage
    /// on it comes back from the store, without it its history is gone.
    ///
    /// # Errors
    /// [`ChatError::ServerRoomsFull`] when the limit is reached and every room has members;
    /// [`ChatError::StoreUnavailable`] when the store cannot be read.
    pub(crate) fn room(&self, name: &RoomName) -> Result<Arc<Room>, ChatError> {
        let mut rooms = lock(&self.rooms);
        let key = name.skeleton();
        if let Some(room) = rooms.get(&key) {
            return Ok(Arc::clone(room));
        }
        if rooms.len() >= self.config.max_rooms {
            let idle = rooms
                .iter()
                .map(|(n, r)| (n, r.activity()))
                .filter(|(_, (members, _))| *members == 0)
                .min_by_key(|(_, (_, last))| *last)
                .map(|(n, _)| n.clone());
            match idle.and_then(|idle| rooms.remove(&idle)) {
                Some(forgotten) => forgotten.forget_ids(),
                None => return Err(ChatError::ServerRoomsFull(self.config.max_rooms)),
            }
        }
        let mut load = match &self.store {
            Some(store) => store
                .load_room(name.as_str(), self.config.history)
                .map_err(|e| {
                    warn!(room = %name, error = %e, "cannot load a room from the store");
                    ChatError::StoreUnavailable(name.clone())
                })?,
            None => RoomLoad::default(),
        };
        if self.peers.is_some() {
            // The stream gives the seqs; the store's reservations ahead mean nothing here.
            load.next_seq = load.tail.last().map_or(1, |m| m.seq + 1);
        }
        let settings = self.room_settings(name)?;
        let room = Arc::new(
            Room::new(
                name.clone(),
                &self.config,
                self.store.clone(),
                load,
                Arc::clone(&self.ids),
                (settings, self.moderation.writer.clone()),
            )
            .with_counters(self.ops.metrics.path.clone())
            .with_producer(self.peers.as_ref().map(|p| p.rooms())),
        );
        rooms.insert(key, Arc::clone(&room));
        Ok(room)
    }

    /// The moderation settings `name` was left with (none yet: a new room's).
    fn room_settings(&self, name: &RoomName) -> Result<Settings, ChatError> {
        let Some(store) = &self.moderation.store else {
            return Ok(Settings::default());
        };
        let document = store.get(&Settings::key(name)).map_err(|e| {
            warn!(room = %name, error = %e, "cannot load a room's settings");
            ChatError::StoreUnavailable(name.clone())
        })?;
        Ok(match document.as_deref().map(Settings::parse) {
            None => Settings::default(),
            Some(Ok(settings)) => settings,
            Some(Err(e)) => {
                warn!(room = %name, error = %e, "a room's stored settings cannot be read; it starts afresh");
                Settings::default()
            }
        })
    }

    /// The room called `name`, or a name it looks like, if it exists; never creates one.
    pub(crate) fn existing_room(&self, name: &RoomName) -> Option<Arc<Room>> {
        lock(&self.rooms).get(&name.skeleton()).cloned()
    }

    /// Rooms with at least one member, by name; secret ones only if `asker` is in them.
    pub(crate) fn rooms(&self, asker: uuid::Uuid) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = lock(&self.rooms).values().cloned().collect();
        let mut list: Vec<RoomInfo> = rooms
            .iter()
            .filter(|r| r.listed_for(asker))
            .map(|r| RoomInfo {
                name: r.name().to_string(),
                members: r.member_count(),
            })
            .filter(|r| r.members > 0)
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}
