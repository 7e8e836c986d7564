// Tells GOV.UK Frontend's styles that JavaScript runs (the page template's one line, kept out
// of the page so the Content Security Policy can forbid inline script).
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' govuk-frontend-supported' : '');
