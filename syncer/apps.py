from django.apps import AppConfig, apps


class SyncerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "syncer"
    verbose_name = "Sync engine"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate
        from django_q.signals import post_spawn

        from syncer.recovery import on_worker_spawn
        from syncer.schedules import prune_schedule_ensure

        post_spawn.connect(on_worker_spawn, dispatch_uid="syncer-resume-stale-runs")
        # Every installation migrates: that is where the daily prune's schedule is made. Once per migrate,
        # after django-q2's own app (this one has no models, so migrate sends it no signal).
        post_migrate.connect(prune_schedule_ensure, sender=self.apps.get_app_config("django_q"),
                             dispatch_uid="syncer-prune-schedule")
        # After django_q's tables exist: on every migrate (and flush), as the demo and deployments run it.
        post_migrate.connect(_ensure_alerts_schedule, sender=apps.get_app_config("django_q"),
                             dispatch_uid="syncer-alerts-schedule")


def _ensure_alerts_schedule(**kwargs) -> None:
    from syncer.schedules import alerts_schedule_ensure, keep_fresh_schedule_ensure

    alerts_schedule_ensure()
    keep_fresh_schedule_ensure()
