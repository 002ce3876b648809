//! Is there anything to show a tray icon? Some Linux desktops (GNOME without the
//! AppIndicator extension, bare window managers) have neither a StatusNotifierWatcher on
//! the session bus nor an XEmbed system tray; there the icon would be invisible, so the
//! app opens its window instead of running unseen. macOS and Windows always have one.

/// Whether a tray icon would be visible.
#[cfg(target_os = "linux")]
pub fn available() -> bool {
    status_notifier_watcher() || xembed_tray()
}

#[cfg(not(target_os = "linux"))]
pub fn available() -> bool {
    true
}

/// A StatusNotifierWatcher (KDE, GNOME's AppIndicator extension, waybar, …) owns its name
/// on the session bus.
#[cfg(target_os = "linux")]
fn status_notifier_watcher() -> bool {
    let Ok(connection) = zbus::blocking::Connection::session() else {
        return false;
    };
    let Ok(bus) = zbus::blocking::fdo::DBusProxy::new(&connection) else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from("org.kde.StatusNotifierWatcher") else {
        return false;
    };
    bus.name_has_owner(name).unwrap_or(false)
}

/// An XEmbed system tray (the freedesktop System Tray spec) owns the
/// `_NET_SYSTEM_TRAY_S<screen>` selection.
#[cfg(target_os = "linux")]
fn xembed_tray() -> bool {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::ConnectionExt as _;

    let Ok((connection, screen)) = x11rb::connect(None) else {
        return false;
    };
    let name = format!("_NET_SYSTEM_TRAY_S{screen}");
    let owner = connection
        .intern_atom(true, name.as_bytes())
        .ok()
        .and_then(|cookie| cookie.reply().ok())
        .filter(|reply| reply.atom != x11rb::NONE)
        .and_then(|reply| connection.get_selection_owner(reply.atom).ok())
        .and_then(|cookie| cookie.reply().ok());
    let _ = connection.flush();
    owner.is_some_and(|reply| reply.owner != x11rb::NONE)
}
