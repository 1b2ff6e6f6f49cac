"""The console's message catalogue, English and French (``?lang=fr``, then the ``ks_lang``
cookie it sets, then Accept-Language). The seeds' vocabulary is kept: French words the
platform already uses (*boitier*, *vehicule*) stay as they are in topic names."""

from __future__ import annotations

from typing import Literal

from fastapi import Request

Lang = Literal["en", "fr"]
LANGS: tuple[Lang, ...] = ("en", "fr")
LANG_COOKIE = "ks_lang"

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (English, French)
    "console": ("Kickstand operator console", "Console opérateur Kickstand"),
    "skip": ("Skip to content", "Aller au contenu"),
    "nav": ("Main navigation", "Navigation principale"),
    "overview": ("Overview", "Vue d'ensemble"),
    "map": ("Live map", "Carte en direct"),
    "alerts": ("Alerts", "Alertes"),
    "trips": ("Trips", "Trajets"),
    "logout": ("Log out", "Se déconnecter"),
    "language": ("Language", "Langue"),
    "login": ("Log in", "Se connecter"),
    "login_title": ("Operator login", "Connexion opérateur"),
    "email": ("Email", "E-mail"),
    "password": ("Password", "Mot de passe"),
    "login_failed": ("Wrong email or password.", "E-mail ou mot de passe incorrect."),
    "forbidden": ("Access refused", "Accès refusé"),
    "forbidden_text": (
        "This console is for the operators of a network. Your account cannot open this page.",
        "Cette console est réservée aux opérateurs d'un réseau. "
        "Votre compte ne peut pas ouvrir cette page.",
    ),
    "not_found": ("Not found", "Introuvable"),
    "error": ("Something went wrong", "Une erreur est survenue"),
    "network": ("Network", "Réseau"),
    "networks": ("Networks", "Réseaux"),
    "stations": ("Stations", "Stations"),
    "station": ("Station", "Station"),
    "stations_online": ("Stations online", "Stations en ligne"),
    "stations_offline": ("Stations offline", "Stations hors ligne"),
    "clusters": ("Clusters", "Emplacements"),
    "cluster": ("Cluster", "Emplacement"),
    "spots": ("Spots", "Bornettes"),
    "spot": ("Spot", "Bornette"),
    "spots_free": ("Free spots", "Bornettes libres"),
    "spots_occupied": ("Occupied spots", "Bornettes occupées"),
    "spots_maintenance": ("Spots in maintenance", "Bornettes en maintenance"),
    "vehicles": ("Vehicles", "Véhicules"),
    "vehicle": ("Vehicle", "Véhicule"),
    "vehicles_available": ("Vehicles available", "Véhicules disponibles"),
    "free_floating": ("Free-floating vehicles", "Véhicules en free-floating"),
    "docked": ("Docked", "Ancrés"),
    "low_battery": ("Low battery", "Batterie faible"),
    "battery": ("Battery", "Batterie"),
    "assist_battery": ("E-assist battery", "Batterie VAE"),
    "state": ("State", "État"),
    "online": ("online", "en ligne"),
    "offline": ("offline", "hors ligne"),
    "free": ("free", "libre"),
    "occupied": ("occupied", "occupée"),
    "maintenance": ("maintenance", "maintenance"),
    "in_maintenance": ("In maintenance", "En maintenance"),
    "alert": ("alert", "alerte"),
    "ok": ("ok", "ok"),
    "full": ("no free spot", "aucune bornette libre"),
    "empty": ("no vehicle", "aucun véhicule"),
    "legend": ("Legend", "Légende"),
    "legend_order": (
        "Each station's marker takes the first of its states in this order;"
        " the table lists them all.",
        "Le repère de chaque station prend le premier de ses états dans cet ordre ;"
        " le tableau les donne tous.",
    ),
    "map_assets_missing": (
        "The map's scripts are not installed on this server (run `make setup`).",
        "Les scripts de la carte ne sont pas installés sur ce serveur (lancer `make setup`).",
    ),
    "map_label": (
        "Map of the network: border, zones, stations and free-floating vehicles",
        "Carte du réseau : limite, zones, stations et véhicules en free-floating",
    ),
    "live": ("Live updates", "Mises à jour en direct"),
    "live_connected": ("live", "en direct"),
    "live_lost": ("reconnecting…", "reconnexion…"),
    "lock_status": ("Lock", "Verrou"),
    "serial_number": ("Serial number", "Numéro de série"),
    "type": ("Type", "Type"),
    "actions": ("Actions", "Actions"),
    "maintenance_on": ("Put in maintenance", "Mettre en maintenance"),
    "maintenance_off": ("End maintenance", "Sortir de maintenance"),
    "station_maintenance_on": ("Whole station in maintenance", "Station entière en maintenance"),
    "station_maintenance_off": (
        "Whole station out of maintenance", "Station entière hors maintenance"
    ),
    "reboot": ("Reboot", "Redémarrer"),
    "trigger_status": ("Ask for its status", "Demander son état"),
    "confirm": ("Confirm", "Confirmer"),
    "cancel": ("Cancel", "Annuler"),
    "confirm_title": ("Please confirm", "Veuillez confirmer"),
    "done": ("Done.", "Fait."),
    "device_answer": ("Device answer", "Réponse de l'équipement"),
    "unlock_spot": ("Unlock for a technician", "Déverrouiller pour un technicien"),
    "unlock_reason": ("Reason", "Motif"),
    "unlock_note": (
        "Unlocking a spot for a technician starts no trip; the vehicle taken is held in "
        "maintenance until the record is resolved.",
        "Le déverrouillage pour un technicien ne démarre aucun trajet ; le véhicule retiré "
        "reste en maintenance jusqu'à la clôture de l'intervention.",
    ),
    "recent_events": ("Recent events", "Événements récents"),
    "no_events": ("No event since this page opened.", "Aucun événement depuis l'ouverture."),
    "no_history": ("No event on record.", "Aucun événement enregistré."),
    "commands": ("Commands sent", "Commandes envoyées"),
    "command": ("Command", "Commande"),
    "result": ("Result", "Résultat"),
    "sent_at": ("Sent", "Envoyée"),
    "none": ("None.", "Aucun."),
    "open_alerts": ("Open alerts", "Alertes ouvertes"),
    "maintenances": ("Maintenances", "Maintenances"),
    "severity": ("Severity", "Gravité"),
    "comment": ("Comment", "Commentaire"),
    "since": ("Since", "Depuis"),
    "energy": ("Energy (Wh per day)", "Énergie (Wh par jour)"),
    "temperature": ("Temperature (°C, last 24 h)", "Température (°C, dernières 24 h)"),
    "latest_reading": ("Latest reading", "Dernière mesure"),
    "battery_history": ("Battery (last 7 days)", "Batterie (7 derniers jours)"),
    "position": ("Position", "Position"),
    "select": ("Select", "Sélectionner"),
    "select_all": ("Select all", "Tout sélectionner"),
    "resolve": ("Resolve", "Résoudre"),
    "silence": ("Silence", "Mettre en sourdine"),
    "escalate": ("Escalate", "Escalader"),
    "with_selected": ("With the selected alerts", "Avec les alertes sélectionnées"),
    "no_alerts": ("No open alert.", "Aucune alerte ouverte."),
    "alert_type": ("Alert", "Alerte"),
    "where": ("Where", "Où"),
    "created": ("Raised", "Levée"),
    "occurrences": ("Occurrences", "Occurrences"),
    "search": ("Search", "Rechercher"),
    "trip": ("Trip", "Trajet"),
    "rider": ("Rider", "Usager"),
    "start": ("Start", "Début"),
    "end": ("End", "Fin"),
    "duration": ("Duration", "Durée"),
    "cost": ("Cost", "Coût"),
    "price_breakdown": ("Price breakdown", "Détail du prix"),
    "stop_billing": ("Stop billing", "Arrêter la facturation"),
    "stop_billing_at": ("Stop billing at", "Arrêter la facturation à"),
    "reason": ("Reason", "Motif"),
    "no_trips": ("No trip found.", "Aucun trajet trouvé."),
    "trips_running": ("Running trips", "Trajets en cours"),
    "trips_on_hold": ("Trips on hold", "Trajets en pause"),
    "trips_today": ("Trips today", "Trajets aujourd'hui"),
    "trips_30_days": ("Trips, last 30 days", "Trajets, 30 derniers jours"),
    "usage": ("Usage, trips per week", "Utilisation, trajets par semaine"),
    "usage_summary": ("Last 12 weeks", "12 dernières semaines"),
    "users": ("Riders", "Usagers"),
    "all_states": ("All states", "Tous les états"),
    "back_to_map": ("Back to the map", "Retour à la carte"),
    "details": ("Details", "Détails"),
    # what a page says after an action (``?done=``)
    "done_billing-stop": ("Billing stopped.", "Facturation arrêtée."),
    "done_resolve": ("Alerts resolved.", "Alertes résolues."),
    "done_silence": ("Alerts silenced.", "Alertes mises en sourdine."),
    "done_escalate": ("Alerts escalated.", "Alertes escaladées."),
}


def negotiate(request: Request) -> Lang:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGS:
        return asked  # type: ignore[return-value]
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGS:
            return tag  # type: ignore[return-value]
    return "en"


def translator(lang: Lang) -> dict[str, str]:
    index = LANGS.index(lang)
    return {key: texts[index] for key, texts in MESSAGES.items()}
