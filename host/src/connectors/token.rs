//! An access token shared by every call to one system: fetched once, renewed
//! before it expires, and fetched again when the system says it no longer
//! holds (a 401), by one caller while the others wait for it.

use super::Result;
use crate::secrets::SecretString;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long before its expiry a token is renewed.
const RENEW_AHEAD: Duration = Duration::from_secs(120);

/// One access token and what came with it.
pub struct Token {
    pub access: SecretString,
    /// When the system will stop honouring it; `None`: until it says so.
    pub expires_at: Option<Instant>,
    /// ServiceNow's password grant gives one; it renews the access token without the password.
    pub refresh: Option<SecretString>,
    /// Where the API lives (Salesforce answers it with every token).
    pub instance_url: Option<String>,
}

impl Token {
    fn fresh(&self) -> bool {
        self.expires_at.is_none_or(|at| Instant::now() + RENEW_AHEAD < at)
    }
}

/// How a system's tokens are obtained.
pub trait Login: Send + Sync + 'static {
    /// A new token; `previous` is the one being replaced, if any (to refresh from).
    fn login(&self, previous: Option<&Token>) -> impl Future<Output = Result<Token>> + Send;
}

pub struct Tokens<L> {
    login: L,
    current: RwLock<Option<Arc<Token>>>,
    /// Held by the one caller fetching a token, so a burst of expired calls logs in once.
    fetching: tokio::sync::Mutex<()>,
}

impl<L: Login> Tokens<L> {
    pub fn new(login: L) -> Self {
        Tokens { login, current: RwLock::new(None), fetching: tokio::sync::Mutex::new(()) }
    }

    pub fn login_method(&self) -> &L {
        &self.login
    }

    /// A token that is not about to expire, logging in when there is none.
    pub async fn get(&self) -> Result<Arc<Token>> {
        if let Some(t) = self.current.read().unwrap().as_ref().filter(|t| t.fresh()) {
            return Ok(t.clone());
        }
        let _one_at_a_time = self.fetching.lock().await;
        // Someone else may have logged in while this caller waited.
        let previous = self.current.read().unwrap().clone();
        if let Some(t) = previous.as_ref().filter(|t| t.fresh()) {
            return Ok(t.clone());
        }
        let token = Arc::new(self.login.login(previous.as_deref()).await?);
        *self.current.write().unwrap() = Some(token.clone());
        Ok(token)
    }

    /// The system refused `stale`: forget it (unless a newer one replaced it already),
    /// so the next [`Tokens::get`] logs in again.
    pub fn invalidate(&self, stale: &Arc<Token>) {
        let mut current = self.current.write().unwrap();
        if current.as_ref().is_some_and(|t| Arc::ptr_eq(t, stale)) {
            *current = None;
        }
    }

    /// The token in use, if any, without logging in.
    pub fn peek(&self) -> Option<Arc<Token>> {
        self.current.read().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting {
        logins: AtomicU32,
        lifetime: Duration,
    }

    impl Login for Counting {
        async fn login(&self, previous: Option<&Token>) -> Result<Token> {
            let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Token {
                access: SecretString::from(format!("token-{n}")),
                expires_at: Some(Instant::now() + self.lifetime),
                refresh: previous.and_then(|p| p.refresh.clone()),
                instance_url: None,
            })
        }
    }

    #[tokio::test]
    async fn a_burst_logs_in_once_and_an_invalidated_token_is_replaced_once() {
        use crate::secrets::ExposeSecret;
        let tokens = Arc::new(Tokens::new(Counting { logins: AtomicU32::new(0), lifetime: Duration::from_secs(3600) }));
        let all = futures_join(&tokens, 16).await;
        assert!(all.iter().all(|t| t.access.expose_secret() == "token-1"));
        assert_eq!(tokens.login_method().logins.load(Ordering::SeqCst), 1);
        // Sixteen callers whose token was refused: one new login, and a late invalidation of the old token is ignored.
        let stale = all[0].clone();
        tokens.invalidate(&stale);
        let again = futures_join(&tokens, 16).await;
        tokens.invalidate(&stale);
        assert!(again.iter().all(|t| t.access.expose_secret() == "token-2"));
        assert_eq!(tokens.get().await.unwrap().access.expose_secret(), "token-2");
        assert_eq!(tokens.login_method().logins.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_near_its_expiry_is_renewed_before_use() {
        let tokens = Tokens::new(Counting { logins: AtomicU32::new(0), lifetime: RENEW_AHEAD / 2 });
        tokens.get().await.unwrap();
        tokens.get().await.unwrap();
        assert_eq!(
            tokens.login_method().logins.load(Ordering::SeqCst),
            2,
            "a token within the renewal margin is not used"
        );
    }

    async fn futures_join(tokens: &Arc<Tokens<Counting>>, n: usize) -> Vec<Arc<Token>> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let t = tokens.clone();
            set.spawn(async move { t.get().await.unwrap() });
        }
        set.join_all().await
    }
}
