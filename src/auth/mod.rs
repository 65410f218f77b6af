//! Accounts and sessions: sign-up, sign-in behind attempt budgets, cookies, the guards
//! that keep every page and server function behind a session, and the refusal of
//! cross-site requests.
mod accounts;
mod client;
mod guard;
mod origin;
mod password;
mod session;
mod throttle;

pub use accounts::{sign_in, sign_up, AuthLimits};
pub use client::client_address;
pub use guard::{guard_pages, require_user};
pub use origin::{page_policy, same_site_only, security_headers, set_page_policy};
pub use password::checks_performed as password_checks_performed;
pub use session::{
    clear_cookie, cookie_name, create_session, delete_session, purge_expired_sessions,
    session_cookie, token_from_headers, user_for_token,
};
pub use throttle::{purge_refilled as purge_refilled_budgets, Budget};
