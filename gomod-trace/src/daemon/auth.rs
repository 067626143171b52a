//! The builds API's bearer token: read once from a file only root (and its group)
//! may read, asked of every API request, compared in constant time. The token
//! is never logged nor put in an error.
use std::{os::unix::fs::PermissionsExt as _, path::Path, sync::Arc};

use axum::{
    Json,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// A token file larger than this is a mistake (a key, a certificate…).
const MAX_TOKEN_FILE: u64 = 4096;
/// Fewer characters than this is a password, not a token.
const MIN_TOKEN_LEN: usize = 16;

/// The token, kept as its SHA-256: requests are hashed and compared in constant
/// time, so neither the token's bytes nor its length show in the timing.
#[derive(Clone)]
pub struct ApiToken(Arc<[u8; 32]>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

impl ApiToken {
    /// Reads the token from `path`: a regular file, not readable or writable by
    /// other users, holding one token of printable ASCII (surrounding whitespace,
    /// such as a final newline, is not part of it).
    pub fn read(path: &Path) -> Result<ApiToken, String> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the API token file {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("the API token file {shown} is not a regular file"));
        }
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            return Err(format!(
                "the API token file {shown} is open to other users (mode {:04o}): chmod o-rwx it (0600 or 0640)",
                mode & 0o7777
            ));
        }
        if meta.len() > MAX_TOKEN_FILE {
            return Err(format!(
                "the API token file {shown} is larger than {MAX_TOKEN_FILE} bytes: not a token"
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the API token file {shown}: {e}"))?;
        let token = bytes.trim_ascii();
        if token.len() < MIN_TOKEN_LEN || !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the API token file {shown} must hold one token of at least {MIN_TOKEN_LEN} printable ASCII characters, without spaces (e.g. openssl rand -hex 32)"
            ));
        }
        Ok(ApiToken::of(token))
    }

    fn of(token: &[u8]) -> ApiToken {
        ApiToken(Arc::new(Sha256::digest(token).into()))
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(given) = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"Bearer "))
            .map(|_| &value[7..])
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given.trim_ascii()).into();
        bool::from(given.as_slice().ct_eq(self.0.as_slice()))
    }
}

/// Reads a token for the client (`builds`, `export`): the same rules as the
/// daemon's, the same file.
pub fn read_client_token(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the API token file {}: {e}", path.display()))?;
    let token = String::from_utf8(bytes.trim_ascii().to_vec())
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
    token.ok_or_else(|| {
        format!(
            "the API token file {} does not hold a token of printable ASCII",
            path.display()
        )
    })
}

/// Middleware: a request without the token is answered 401 and goes no further.
pub async fn require_token(
    State(token): State<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if token.admits(given) {
        return next.run(request).await;
    }
    let message = if given.is_none() {
        "the builds API needs a token: Authorization: Bearer TOKEN (gomod-trace builds --api-token-file FILE)"
    } else {
        "wrong token"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"gomod-trace\"")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn token_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    #[test]
    fn the_token_admits_only_itself() {
        let file = token_file(&format!("{TOKEN}\n"), 0o600);
        let token = ApiToken::read(file.path()).unwrap();
        assert!(token.admits(Some(format!("Bearer {TOKEN}").as_bytes())));
        assert!(
            token.admits(Some(format!("bearer {TOKEN}").as_bytes())),
            "the scheme is case-insensitive"
        );
        for wrong in [
            None,
            Some(String::new()),
            Some(TOKEN.to_string()),
            Some(format!("Basic {TOKEN}")),
            Some(format!("Bearer {}", &TOKEN[1..])),
            Some(format!("Bearer {TOKEN}0")),
            Some("Bearer ".into()),
        ] {
            assert!(
                !token.admits(wrong.as_deref().map(str::as_bytes)),
                "{wrong:?}"
            );
        }
        assert_eq!(format!("{token:?}"), "ApiToken(…)", "never printed");
        assert_eq!(read_client_token(file.path()).unwrap(), TOKEN);
    }

    #[test]
    fn a_token_file_open_to_others_or_not_a_token_is_refused() {
        for mode in [0o604, 0o602, 0o644, 0o666] {
            let file = token_file(TOKEN, mode);
            let error = ApiToken::read(file.path()).unwrap_err();
            assert!(
                error.contains("open to other users") && !error.contains(TOKEN),
                "{error}"
            );
        }
        assert!(
            ApiToken::read(token_file(TOKEN, 0o640).path()).is_ok(),
            "its group may read it"
        );
        for bad in [
            "",
            "short",
            "with a space in the middle of it",
            &"x".repeat(5000),
        ] {
            let error = ApiToken::read(token_file(bad, 0o600).path()).unwrap_err();
            assert!(!error.contains(bad) || bad.is_empty(), "{error}");
        }
        assert!(
            ApiToken::read(Path::new("/nonexistent/token"))
                .unwrap_err()
                .contains("cannot read")
        );
        assert!(
            ApiToken::read(Path::new("/"))
                .unwrap_err()
                .contains("not a regular file")
        );
    }
}
