//! Opaque list cursors: clients pass back what they were given and never build one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Position;

use crate::error::ApiError;

pub fn encode(position: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("p1:{position}"))
}

pub fn decode(cursor: &str) -> Result<Position, ApiError> {
    let bad = || ApiError::bad_request("cursor: not a cursor this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    text.strip_prefix("p1:")
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(super::decode(&super::encode(42)).unwrap(), 42);
        assert!(super::decode("42").is_err());
        assert!(super::decode("!!").is_err());
    }
}
