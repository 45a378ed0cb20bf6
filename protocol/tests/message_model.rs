//! Every valid body survives both encodings unchanged.

mod common;

use comity_protocol::message::Body;
use common::strategies::any_body;
use proptest::prelude::*;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_bodies_validate_and_round_trip(body in any_body()) {
        prop_assert_eq!(body.validate(), Ok(()));

        let json = serde_json::to_string(&body).unwrap();
        let from_json: Body = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&from_json, &body);

        let bytes = bincode::encode_to_vec(&body, config()).unwrap();
        let (from_bin, used): (Body, usize) = bincode::decode_from_slice(&bytes, config()).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&from_bin, &body);
        prop_assert_eq!(from_bin.kind(), body.kind());
    }
}
