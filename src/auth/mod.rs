//! Accounts and sessions: sign-up, sign-in with a lockout, cookies, the guards that
//! keep every page and server function behind a session, and the refusal of
//! cross-site requests.
mod accounts;
mod guard;
mod origin;
mod password;
mod session;

pub use accounts::{sign_in, sign_up};
pub use guard::{guard_pages, require_user};
pub use origin::{same_site_only, security_headers};
pub use session::{
    clear_cookie, create_session, delete_session, purge_expired_sessions, session_cookie,
    token_from_headers, user_for_token, SESSION_COOKIE,
};
