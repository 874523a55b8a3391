// Drives seam's dashboard in headless Chromium, the way an operator uses it.
// Usage: node check.mjs DASHBOARD_URL TOKEN SYNCED_CASE_ID FAILED_CASE_ID SCREENSHOT
// Exits non-zero, saying what was wrong, when the page does not show what it should.
import { chromium } from "playwright-core";

const [url, token, syncedCase, failedCase, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const check = (ok, what) => { if (!ok) throw new Error(what); console.log(`ok  ${what}`); };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on("pageerror", e => problems.push(e.message));

  // Without the token the page asks for it.
  await page.goto(url);
  await page.locator("#login").waitFor({ state: "visible" });
  check(await page.locator("#login").isVisible(), "without a token the dashboard asks for one");

  // Signed in through the form, as an operator does.
  await page.locator("#token").fill(token);
  await page.locator("#login-form button").click();
  const tenant = page.locator('section[data-tenant="demo"]');
  await tenant.waitFor();
  check((await page.locator("#updated").textContent()).startsWith("updated"), "the overview loaded");

  // Packs and versions.
  const packs = await tenant.locator('[data-testid="packs"]').textContent();
  check(packs.includes("case-incident@1.0.0"), `the mapping pack and its version are shown (${packs})`);

  // Links with their sync state.
  const syncedRow = tenant.locator(`tr[data-case="${syncedCase}"]`);
  await syncedRow.waitFor();
  check((await syncedRow.locator('[data-testid="state"]').textContent()) === "in sync", "the healthy pair is in sync");
  const failedRow = tenant.locator(`tr[data-case="${failedCase}"]`);
  check((await failedRow.locator('[data-testid="state"]').textContent()) === "failed", "the pair with a dead letter is failed");

  // Dead letters, and the re-drive button.
  const deadCount = await tenant.locator('[data-testid="dead-count"]').textContent();
  check(deadCount === "1", `the backlog shows one dead letter (it shows ${JSON.stringify(deadCount)})`);
  const dead = tenant.locator('[data-testid="dead-letters"] tr[data-dead]');
  check((await dead.count()) === 1, "one dead letter is listed");
  check((await dead.textContent()).includes("404"), "the dead letter says why it failed");
  await page.screenshot({ path: screenshot, fullPage: true });
  // Re-driven, the event runs again; the incident is still gone, so it fails again, and its story says both.
  const answer = page.waitForResponse(r => r.url().includes("/redrive"));
  await dead.locator('[data-testid="redrive"]').click();
  check((await answer).status() === 200, "the re-drive was accepted");

  // The audit trail of a record: why did its fields change?
  await syncedRow.locator("a.record").first().click();
  const trail = page.locator('[data-testid="trail"]');
  await trail.waitFor();
  const trailText = await trail.textContent();
  check(trailText.includes("ServiceNow_Incident__c"), "the Case's trail shows the link seam wrote");
  check(trailText.includes("case-incident@1.0.0"), "each change names the pack and version");
  check(trailText.includes("because") || trailText.includes("created"), "each change names the event behind it");

  // One field of the incident: urgency, and the Case change that set it.
  await page.locator("#t-system").selectOption("servicenow");
  await page.fill("#t-object", "incident");
  const incident = await syncedRow.locator("a.record").nth(1).textContent();
  await page.fill("#t-id", incident);
  await page.fill("#t-field", "urgency");
  await page.click("#t-go");
  await page.waitForFunction(() => document.querySelector("#trail-result p")?.textContent.includes("urgency"));
  const urgency = await page.locator("#trail-result").textContent();
  check(urgency.includes('→ "2"') && urgency.includes("salesforce Case"), `the incident's urgency traces back to the Case (${urgency.slice(0, 300)})`);

  // The failed Case's trail lists what has not gone through, with its re-drive in the story.
  await page.locator("#t-system").selectOption("salesforce");
  await page.fill("#t-object", "Case");
  await page.fill("#t-id", failedCase);
  await page.fill("#t-field", "");
  await page.click("#t-go");
  const unfinished = page.locator('[data-testid="unfinished"]');
  await unfinished.waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="unfinished"]')?.textContent.includes("re-driven"), null, { timeout: 15000 }).catch(async () => {
    // The refresh may have raced the re-drive: ask again.
    await page.click("#t-go");
    await page.waitForFunction(() => document.querySelector('[data-testid="unfinished"]')?.textContent.includes("re-driven"), null, { timeout: 15000 });
  });
  check((await unfinished.textContent()).includes("by dashboard"), "the event's history says the dashboard re-drove it");
  check(problems.length === 0, `no script errors on the page (${problems.join("; ")})`);
} finally {
  await browser.close();
}
