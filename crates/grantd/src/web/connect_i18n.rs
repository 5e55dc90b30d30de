//! The Connect UI's words in English, German, Spanish, French and Japanese, chosen by `?lang=`
//! (what `@nangohq/frontend`'s `openConnectUI({ lang })` sends), else the browser's
//! `Accept-Language`, else English.

use axum::http::HeaderMap;

/// The Connect UI's texts in one language.
pub struct Texts {
    /// The `lang` attribute and the code passed on.
    pub code: &'static str,
    pub title: &'static str,
    pub title_reconnect: &'static str,
    pub intro: &'static str,
    /// Followed by the integration's name.
    pub connect: &'static str,
    pub docs: &'static str,
    pub none: &'static str,
    pub connected: &'static str,
    pub connected_detail: &'static str,
    pub failed: &'static str,
    pub waiting: &'static str,
    pub close: &'static str,
    pub loading: &'static str,
    pub incomplete: &'static str,
}

const EN: Texts = Texts {
    code: "en",
    title: "Connect an account",
    title_reconnect: "Reconnect your account",
    intro: "Choose what to connect. You will sign in with Microsoft and approve access.",
    connect: "Connect",
    docs: "Setup guide",
    none: "No integration is available for this link. Ask the app's developers to set one up.",
    connected: "Connected",
    connected_detail: "Your account is connected. You can close this window.",
    failed: "The connection did not complete",
    waiting: "Finish signing in in the window that opened…",
    close: "Close",
    loading: "Loading…",
    incomplete: "This connect link is incomplete. Ask the app for a new connect link.",
};

const DE: Texts = Texts {
    code: "de",
    title: "Konto verbinden",
    title_reconnect: "Konto erneut verbinden",
    intro: "Wählen Sie aus, was verbunden werden soll. Sie melden sich bei Microsoft an und erteilen den Zugriff.",
    connect: "Verbinden:",
    docs: "Einrichtungsanleitung",
    none: "Für diesen Link ist keine Integration verfügbar. Bitten Sie die Entwickler der App, eine einzurichten.",
    connected: "Verbunden",
    connected_detail: "Ihr Konto ist verbunden. Sie können dieses Fenster schließen.",
    failed: "Die Verbindung wurde nicht hergestellt",
    waiting: "Schließen Sie die Anmeldung im geöffneten Fenster ab…",
    close: "Schließen",
    loading: "Wird geladen…",
    incomplete: "Dieser Verbindungslink ist unvollständig. Fordern Sie in der App einen neuen an.",
};

const ES: Texts = Texts {
    code: "es",
    title: "Conectar una cuenta",
    title_reconnect: "Volver a conectar su cuenta",
    intro: "Elija qué conectar. Iniciará sesión con Microsoft y aprobará el acceso.",
    connect: "Conectar",
    docs: "Guía de configuración",
    none: "No hay ninguna integración disponible para este enlace. Pida a los desarrolladores de la aplicación que configuren una.",
    connected: "Conectado",
    connected_detail: "Su cuenta está conectada. Puede cerrar esta ventana.",
    failed: "La conexión no se completó",
    waiting: "Termine de iniciar sesión en la ventana que se abrió…",
    close: "Cerrar",
    loading: "Cargando…",
    incomplete: "Este enlace de conexión está incompleto. Pida uno nuevo en la aplicación.",
};

const FR: Texts = Texts {
    code: "fr",
    title: "Connecter un compte",
    title_reconnect: "Reconnecter votre compte",
    intro: "Choisissez ce que vous voulez connecter. Vous vous connecterez avec Microsoft et autoriserez l'accès.",
    connect: "Connecter",
    docs: "Guide de configuration",
    none: "Aucune intégration n'est disponible pour ce lien. Demandez aux développeurs de l'application d'en configurer une.",
    connected: "Connecté",
    connected_detail: "Votre compte est connecté. Vous pouvez fermer cette fenêtre.",
    failed: "La connexion n'a pas abouti",
    waiting: "Terminez la connexion dans la fenêtre qui s'est ouverte…",
    close: "Fermer",
    loading: "Chargement…",
    incomplete: "Ce lien de connexion est incomplet. Demandez-en un nouveau dans l'application.",
};

const JA: Texts = Texts {
    code: "ja",
    title: "アカウントを接続",
    title_reconnect: "アカウントを再接続",
    intro: "接続するものを選んでください。Microsoft にサインインしてアクセスを承認します。",
    connect: "接続:",
    docs: "設定ガイド",
    none: "このリンクで利用できる連携はありません。アプリの開発者に設定を依頼してください。",
    connected: "接続しました",
    connected_detail: "アカウントが接続されました。このウィンドウは閉じてかまいません。",
    failed: "接続が完了しませんでした",
    waiting: "開いたウィンドウでサインインを完了してください…",
    close: "閉じる",
    loading: "読み込み中…",
    incomplete: "この接続リンクは不完全です。アプリで新しいリンクを取得してください。",
};

fn by_code(code: &str) -> Option<&'static Texts> {
    let primary = code
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match primary.as_str() {
        "en" => Some(&EN),
        "de" => Some(&DE),
        "es" => Some(&ES),
        "fr" => Some(&FR),
        "ja" => Some(&JA),
        _ => None,
    }
}

/// `?lang=` first, then `Accept-Language` in the browser's order of preference, then English.
pub fn pick(lang: Option<&str>, headers: &HeaderMap) -> &'static Texts {
    if let Some(t) = lang.and_then(by_code) {
        return t;
    }
    let accept = headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut prefs: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (!tag.is_empty()).then_some((q, tag))
        })
        .collect();
    prefs.sort_by(|a, b| b.0.total_cmp(&a.0));
    prefs
        .into_iter()
        .find_map(|(_, tag)| by_code(tag))
        .unwrap_or(&EN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("accept-language", v.parse().unwrap());
        h
    }

    #[test]
    fn query_then_accept_language_then_english() {
        assert_eq!(pick(Some("fr"), &accept("de")).code, "fr");
        assert_eq!(pick(Some("xx"), &accept("de-CH, en;q=0.5")).code, "de");
        assert_eq!(pick(None, &accept("it, ja;q=0.8, es;q=0.9")).code, "es");
        assert_eq!(pick(None, &accept("it")).code, "en");
        assert_eq!(pick(None, &HeaderMap::new()).code, "en");
        assert_eq!(pick(Some("ja-JP"), &HeaderMap::new()).code, "ja");
    }
}
