//! Accounts and sessions: sign-up, sign-in with a lockout, cookies, and the guards that
//! keep every page and server function behind a session.
mod accounts;
mod guard;
mod password;
mod session;

pub use accounts::{sign_in, sign_up};
pub use guard::{guard_pages, require_user};
pub use session::{
    clear_cookie, create_session, delete_session, session_cookie, token_from_headers,
    user_for_token, SESSION_COOKIE,
};
