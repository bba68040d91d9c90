//! Records too large for one log entry, stored as parts.
//!
//! Why: the published log's entry bundles (C2SP `tlog-tiles`) frame each
//! entry with a big-endian `uint16` length, so an entry holds at most
//! 65,535 bytes. A first sync of a few thousand objects makes a larger
//! record. Rather than leave the format, such a record is stored as
//! several records in a row, each a leaf of its own: the first carries
//! everything but part of the lists, the rest carry the same App,
//! revision, kind and result with the rest of the objects, images, drift
//! and commits. `part` (`index` of `of`, from 1) says which is which.
//!
//! Guarantees: every part's body is at most [`MAX_BODY`] bytes; the parts'
//! lists, concatenated in order, are the record's lists; a record that fits
//! is stored as it is, with no `part`.

use serde::{Deserialize, Serialize};

use crate::SyncRecord;

/// The largest body one log entry holds (`uint16` framing).
pub const MAX_BODY: usize = 65_535;

/// Which part of a split record this is: `index` of `of`, from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub index: u32,
    pub of: u32,
}

/// The text fields a part repeats are cut to this many bytes.
const TEXT: usize = 1024;

/// Bytes kept free in a part for its `part` field, which the header does
/// not carry yet (`,"part":{"index":4294967295,"of":4294967295}` is 45).
const SLACK: usize = 64;

fn size<T: Serialize>(item: &T) -> usize {
    serde_json::to_string(item).map_or(MAX_BODY, |s| s.len()) + 1
}

/// Fills parts in order, starting a new one when the next item would not
/// fit the room left after the header.
struct Packer {
    header: SyncRecord,
    room: usize,
    used: usize,
    parts: Vec<SyncRecord>,
}

impl Packer {
    fn add<T: Serialize + Clone>(
        &mut self,
        items: &[T],
        field: fn(&mut SyncRecord) -> &mut Vec<T>,
    ) {
        for item in items {
            let n = size(item);
            if self.used + n > self.room && self.used > 0 {
                self.parts.push(self.header.clone());
                self.used = 0;
            }
            self.used += n;
            if let Some(last) = self.parts.last_mut() {
                field(last).push(item.clone());
            }
        }
    }
}

impl SyncRecord {
    /// The record as it is stored: itself when it fits one entry, or
    /// parts that each do.
    pub fn parts(&self) -> Vec<SyncRecord> {
        if size(self) <= MAX_BODY {
            return vec![self.clone()];
        }
        let header = SyncRecord {
            objects: vec![],
            images: vec![],
            drift: vec![],
            trust: vec![],
            imported: vec![],
            message: airgate_core::text::cut(&self.message, TEXT),
            error: self
                .error
                .as_deref()
                .map(|e| airgate_core::text::cut(e, TEXT)),
            ..self.clone()
        };
        let mut packer = Packer {
            room: MAX_BODY.saturating_sub(size(&header) + SLACK),
            used: 0,
            parts: vec![header.clone()],
            header,
        };
        packer.add(&self.objects, |r| &mut r.objects);
        packer.add(&self.images, |r| &mut r.images);
        packer.add(&self.drift, |r| &mut r.drift);
        packer.add(&self.trust, |r| &mut r.trust);
        packer.add(&self.imported, |r| &mut r.imported);
        let mut parts = packer.parts;
        let of = parts.len() as u32;
        for (i, p) in parts.iter_mut().enumerate() {
            p.part = Some(Part {
                index: i as u32 + 1,
                of,
            });
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectChange;

    fn sync(objects: usize) -> SyncRecord {
        SyncRecord {
            app: "shop/web".into(),
            revision: "a".repeat(40),
            message: "m".repeat(10_000),
            objects: (0..objects)
                .map(|i| ObjectChange {
                    object: format!("ConfigMap/shop/config-{i:06}"),
                    action: "created".into(),
                    fields: vec![],
                })
                .collect(),
            images: (0..50)
                .map(|i| format!("r.internal/x{i}@sha256:{}", "0".repeat(64)))
                .collect(),
            ..SyncRecord::default()
        }
    }

    #[test]
    fn a_record_that_fits_is_stored_as_it_is() {
        let record = sync(10);
        assert_eq!(record.parts(), vec![record]);
    }

    #[test]
    fn a_sync_of_fifty_thousand_objects_is_split_into_parts_that_fit_one_entry()
    -> Result<(), serde_json::Error> {
        let record = sync(50_000);
        let parts = record.parts();
        assert!(parts.len() > 20, "{} parts", parts.len());
        let mut objects = vec![];
        let mut images = vec![];
        for (i, p) in parts.iter().enumerate() {
            assert!(serde_json::to_string(p)?.len() <= MAX_BODY, "part {i}");
            assert_eq!(
                p.part,
                Some(Part {
                    index: i as u32 + 1,
                    of: parts.len() as u32
                })
            );
            assert_eq!(
                (p.app.as_str(), p.revision.as_str()),
                ("shop/web", record.revision.as_str())
            );
            objects.extend(p.objects.iter().cloned());
            images.extend(p.images.iter().cloned());
        }
        assert_eq!(objects, record.objects);
        assert_eq!(images, record.images);
        Ok(())
    }
}
