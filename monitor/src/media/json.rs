//! A flow's `Media` as the JSON summary shows it: exactly the contract's fields
//! (`client_sent`, `server_replied`, `verdict`, `sni`, `stun` with four counts). What
//! the verdict keeps beyond them (the evidence, STUN requests still pending, the last answer's
//! time) is for alerts and the detail view, not the contract, so it is left out here.

use serde::{Serialize, Serializer};

use super::{
    stun::Counts,
    verdict::{ClientSent, Media, ServerReplied, Verdict},
};

macro_rules! by_name {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    )*};
}

by_name!(ClientSent, ServerReplied, Verdict);

/// The contract's `stun` object.
#[derive(Serialize)]
struct StunJson {
    requests: u64,
    responses: u64,
    errors: u64,
    unanswered: u64,
}

#[derive(Serialize)]
struct MediaJson<'a> {
    client_sent: Option<ClientSent>,
    server_replied: Option<ServerReplied>,
    verdict: Option<Verdict>,
    sni: Option<&'a str>,
    stun: Option<StunJson>,
}

impl From<&Counts> for StunJson {
    fn from(c: &Counts) -> Self {
        StunJson {
            requests: c.requests,
            responses: c.responses,
            errors: c.errors,
            unanswered: c.unanswered,
        }
    }
}

impl Serialize for Media {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MediaJson {
            client_sent: self.client_sent,
            server_replied: self.server_replied,
            verdict: self.verdict,
            sni: self.sni.as_deref(),
            stun: self.stun.as_ref().map(StunJson::from),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::media::verdict::{Evidence, Shape, GENUINE};

    fn keys(v: &Value) -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn media_serializes_to_exactly_the_contract_fields() {
        let full = Media {
            client_sent: Some(ClientSent::PseudoTls),
            server_replied: Some(ServerReplied::TlsAlert),
            verdict: Some(Verdict::Rejected),
            sni: Some("edge.example.com".into()),
            stun: Some(Counts {
                requests: 10,
                responses: 3,
                errors: 1,
                unanswered: 5,
                pending: 1,
                last_answered_ns: Some(42),
            }),
            evidence: Some(Evidence {
                expected: GENUINE,
                got: Shape::default(),
                mismatch: None,
                reply_after_ns: Some(1),
                reset: None,
            }),
        };
        let v = serde_json::to_value(&full).expect("serializes");
        assert_eq!(
            v,
            json!({
                "client_sent": "pseudo_tls",
                "server_replied": "tls_alert",
                "verdict": "rejected",
                "sni": "edge.example.com",
                "stun": {"requests": 10, "responses": 3, "errors": 1, "unanswered": 5}
            })
        );
        let mut names = keys(&v);
        names.sort();
        assert_eq!(
            names,
            ["client_sent", "server_replied", "sni", "stun", "verdict"]
        );
        let mut stun = keys(&v["stun"]);
        stun.sort();
        assert_eq!(stun, ["errors", "requests", "responses", "unanswered"]);
    }

    #[test]
    fn an_unknown_media_is_all_nulls() {
        let v = serde_json::to_value(Media::default()).expect("serializes");
        assert_eq!(
            v,
            json!({"client_sent": null, "server_replied": null, "verdict": null,
                   "sni": null, "stun": null})
        );
    }
}
