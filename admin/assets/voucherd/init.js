// Starts GOV.UK Frontend's components, and the copy buttons beside a new API key. Every page
// works without this script.
import { initAll } from './govuk-frontend.min.js'

initAll()

for (const button of document.querySelectorAll('[data-copy-target]')) {
  button.hidden = false
  button.addEventListener('click', async () => {
    const target = document.getElementById(button.getAttribute('data-copy-target'))
    if (!target || !navigator.clipboard) return
    await navigator.clipboard.writeText(target.textContent.trim())
    button.textContent = 'Copied'
  })
}
