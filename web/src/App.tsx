// The app's frame: the navigation, the signed-in user, and the screen the address names.
import { AnalyticsScreen } from "./screens/AnalyticsScreen";
import { HomeScreen } from "./screens/HomeScreen";
import { NotFoundScreen } from "./screens/NotFoundScreen";
import { SignInScreen } from "./screens/SignInScreen";
import { StudioScreen } from "./screens/StudioScreen";
import { WatchScreen } from "./screens/WatchScreen";
import { Link, useRoute, type Route } from "./lib/router";
import { useSession } from "./lib/session";

function Screen(props: { route: Route }) {
  const r = props.route;
  switch (r.name) {
    case "browse":
      return <HomeScreen />;
    case "watch":
      return <WatchScreen key={r.id} id={r.id} />;
    case "studio":
      return <StudioScreen key={r.id ?? ""} id={r.id} />;
    case "analytics":
      return <AnalyticsScreen key={r.id ?? ""} id={r.id} />;
    case "signin":
      return <SignInScreen />;
    default:
      return <NotFoundScreen />;
  }
}

export function App() {
  const route = useRoute();
  const session = useSession();
  return (
    <>
      <header className="top">
        <Link to="/" className="brand">
          LumaLive
        </Link>
        <nav>
          <Link to="/">Browse</Link>
          <Link to="/studio">Studio</Link>
          <Link to="/analytics">Analytics</Link>
        </nav>
        <Link to="/signin" className="who">
          {session.token ? (session.username ?? `user ${session.userId?.slice(0, 8) ?? "?"}`) : "Sign in"}
        </Link>
      </header>
      <Screen route={route} />
    </>
  );
}

export default App;
