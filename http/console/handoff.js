// The page that ends a browser handoff: the daemon answered the new session's CSRF
// token in it (the only other answer carrying it is login's). Keep it in this tab's
// sessionStorage, where the console reads it, and open the console. A classic script,
// not a module, so it runs before the page is shown.

const CSRF_KEY = 'palyra.csrf';

const csrf = document.querySelector('meta[name="palyra-csrf"]')?.content;
const target = document.querySelector('meta[name="palyra-redirect"]')?.content || '/';
if (csrf) {
  try {
    window.sessionStorage.setItem(CSRF_KEY, csrf);
  } catch {
    // Storage refused (a private mode): the console will ask for a login.
  }
}
// The daemon checked the path when the link was minted; stay on this origin anyway.
window.location.replace(target.startsWith('/') && !target.startsWith('//') ? target : '/');
