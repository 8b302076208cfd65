/**
 * The running backend these tests talk to, as `tests/system/test_web_client.py`
 * describes it: `LUMALIVE_API_URL` and `LUMALIVE_TEST_USERS` (JSON list of
 * `{id, token, name}`, each a real user with a real token). Nothing here fakes it.
 */
import { LiveStreamingService, type ServiceOptions } from "../src/services/LiveStreamingService";

export interface TestUser {
  id: string;
  token: string;
  name: string;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: these tests need a running backend ` +
        "(run them through tests/system/test_web_client.py)",
    );
  }
  return value;
}

export const API_URL = required("LUMALIVE_API_URL");

const USERS: TestUser[] = JSON.parse(required("LUMALIVE_TEST_USERS")) as TestUser[];

/** The n-th test user (each test file uses its own, so quotas never collide). */
export function user(n: number): TestUser {
  const found = USERS[n];
  if (!found) throw new Error(`LUMALIVE_TEST_USERS has no user #${n}`);
  return found;
}

/** A service of its own acting as `who` (null: anonymous). */
export function serviceFor(who: TestUser | null, extra: ServiceOptions = {}): LiveStreamingService {
  return new LiveStreamingService({
    baseUrl: API_URL,
    getToken: () => who?.token ?? null,
    ...extra,
  });
}

/** Configure the app's singleton, as an app would at start-up, to act as `who`. */
export function signIn(who: TestUser): LiveStreamingService {
  return LiveStreamingService.configure({ baseUrl: API_URL, getToken: () => who.token });
}

/** A live stream owned by `owner`, through the client library itself. */
export async function liveStream(
  owner: LiveStreamingService,
  title: string,
  privacy: "public" | "friends" | "private" = "public",
): Promise<string> {
  const created = await owner.createLiveStream({ title, privacy });
  await owner.startLiveStream(created.id);
  owner.unwatchStream();
  return created.id;
}
